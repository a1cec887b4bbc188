//! `profiles.put/get/list/remove`, and the routability invariant: after a put the profile
//! can be returned by `auth.resolve` in its scope (appended to an explicit order, or first
//! with `primary`).

use super::{
    agent_param, load_aliases, now_ms, profile_id_param, provider_param, revision_conflict,
    unknown_profile, App,
};
use crate::api::{
    GetParams, GetResult, ListParams, ListResult, PutParams, PutResult, RemoveParams, RemoveResult,
};
use crate::core::error::Result;
use crate::core::profile::{validate_profile, ProfileView, StoredProfile};
use crate::core::resolve::{self};
use crate::core::status;
use crate::core::status::profile_status;
use crate::core::usage::Usage;
use crate::handlers::refresh::{oauth_providers, refreshable};
use crate::store::Tx;
use std::collections::{HashMap, HashSet};

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

impl App {
    /// `profiles.put`: create or replace, keeping the routability invariant.
    pub(crate) fn profiles_put(&self, p: PutParams) -> Result<PutResult> {
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
    pub(crate) fn profiles_get(&self, p: GetParams) -> Result<GetResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let now = now_ms();
        self.store().read(|c| {
            let aliases = load_aliases(c)?;
            let (id, _) = profile_id_param(&p.profile_id, &aliases, "/profileId")?;
            let sp = c
                .view_profile(a, &id)?
                .ok_or_else(|| unknown_profile(&id, a))?;
            if p.reveal {
                crate::handlers::seal::require_secrets(c, [&sp])?;
            }
            let usage = c.usages(&[id.as_str()])?;
            let with_oauth = oauth_providers(c)?;
            Ok(GetResult {
                agent: agent.clone(),
                profile: view_of(&sp, &usage, &with_oauth, now, p.reveal),
            })
        })
    }

    /// `profiles.list`.
    pub(crate) fn profiles_list(&self, p: ListParams) -> Result<ListResult> {
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
    pub(crate) fn profiles_remove(&self, p: RemoveParams) -> Result<RemoveResult> {
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
}
