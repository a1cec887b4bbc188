//! `order.get`, `order.set`, `order.clear`: the explicit per-provider order of a scope, and
//! the exact walk `auth.resolve` would do now.

use super::auth::materialise;
use super::walk::{RawWalk, WalkRequest};
use super::{
    agent_param, load_aliases, now_ms, profile_id_param, provider_param, revision_conflict, App,
    RefreshMode,
};
use crate::api::{
    EffectiveEntry, OrderClearParams, OrderClearResult, OrderGetParams, OrderGetResult,
    OrderSetParams, OrderSetResult,
};
use crate::core::error::{ErrorKind, Result, RpcError};
use crate::store::Tx;
use std::collections::{BTreeSet, HashMap};

impl App {
    /// `order.get`: the explicit order in effect and the walk it gives now — the same
    /// normalised request and walk as `auth.resolve` ([`super::walk`]).
    ///
    /// Errors: `invalid_params`, store errors.
    pub fn order_get(&self, p: OrderGetParams) -> Result<OrderGetResult> {
        let agent = WalkRequest::agent(p.agent)?;
        let now = now_ms();
        let raw = RawWalk {
            provider: Some(&p.provider),
            profile_id: None,
            model: p.model.as_deref(),
        };
        // The store is read in one transaction; SecretRefs (which may run exec helpers or
        // read files) are resolved after it ended, so no helper runs inside it.
        let (req, mut view) = self.read_walk(agent, raw, now, false)?;
        let steps = std::mem::take(&mut view.steps);
        let walked = materialise(
            &view,
            steps,
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
        Ok(OrderGetResult {
            provider: req.provider,
            agent: req.agent,
            order: view.order().map(|o| o.ids.clone()),
            source: view.order().map(|o| o.source),
            effective,
        })
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
}
