//! What openclaw.json `auth.profiles` adds to a plan: orders where OpenClaw's walk differs
//! from modelauth's default, and profiles whose `mode` names another credential type.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::plan::{ImportPlan, PlannedOrder, ScopePlan};
use super::types::ImportWarning;
use crate::core::ids::{self, Aliases};
use crate::core::profile::{escape_pointer, Credential, Profile};

/// OpenClaw walks a provider that has no explicit order over the ids of `openclaw.json`
/// `auth.profiles` (`config_ids`, in file order), stably sorted by type (oauth, token,
/// api_key), expired oauth last, least recently used first (`resolveAuthProfileOrder` with
/// `explicitProfiles`); ids not listed there are not walked. modelauth's default order
/// breaks ties by id instead. Where the two differ for some scope view of the import (the
/// shared scope, or shared + an agent's own without its own order), the config sequence,
/// sorted OpenClaw's way, becomes the shared order, so that every view picks what OpenClaw
/// picks. Pure: `now` is ms since the epoch. Returns the providers given such an order.
pub(crate) fn config_profile_orders(
    plan: &mut ImportPlan,
    config_ids: &[String],
    now: i64,
    aliases: &Aliases,
) -> Vec<String> {
    let by_provider = config_ids_by_provider(config_ids, aliases);
    let keys = WalkKeys::new(plan, now);
    if by_provider.is_empty() {
        return vec![];
    }
    let shared_ix = match plan.scopes.iter().position(|s| s.agent.is_none()) {
        Some(i) => i,
        None => {
            plan.scopes.insert(0, ScopePlan::default());
            0
        }
    };
    let mut given = vec![];
    for (provider, cfg) in by_provider {
        if plan.scopes[shared_ix].orders.contains_key(&provider) {
            continue;
        }
        let views = scope_views(plan, shared_ix, &provider);
        let differs = views.iter().filter(|v| !v.is_empty()).any(|v| {
            let mut ma: Vec<&Profile> = v.values().copied().collect();
            ma.sort_by_key(|p| keys.modelauth(p));
            keys.openclaw_order(&cfg, v) != ma.into_iter().map(|p| p.id.clone()).collect::<Vec<_>>()
        });
        if !differs {
            continue;
        }
        let mut all: BTreeMap<&str, &Profile> = BTreeMap::new();
        for s in &plan.scopes {
            for pp in s
                .profiles
                .values()
                .filter(|pp| pp.profile.provider == provider)
            {
                all.entry(pp.profile.id.as_str()).or_insert(&pp.profile);
            }
        }
        let ids = keys.openclaw_order(&cfg, &all);
        if ids.is_empty() {
            continue;
        }
        give_config_order(plan, shared_ix, &provider, &cfg, ids);
        given.push(provider);
    }
    given
}

/// The normalised ids of openclaw.json `auth.profiles` per provider, in file order,
/// without duplicates; invalid ids are left out.
fn config_ids_by_provider(
    config_ids: &[String],
    aliases: &Aliases,
) -> BTreeMap<String, Vec<String>> {
    let mut by_provider: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for raw in config_ids {
        if let Ok((id, _)) = ids::normalize_profile_id(raw, aliases) {
            let provider = id
                .split_once(':')
                .map(|(p, _)| p.to_string())
                .unwrap_or_default();
            let list = by_provider.entry(provider).or_default();
            if !list.contains(&id) {
                list.push(id);
            }
        }
    }
    by_provider
}

/// The sort keys of the two walks: the last use of each profile across the plan's
/// scopes (ms since the epoch) and `now`.
struct WalkKeys {
    usage: BTreeMap<String, Option<i64>>,
    now: i64,
}

impl WalkKeys {
    fn new(plan: &ImportPlan, now: i64) -> Self {
        let usage = plan
            .scopes
            .iter()
            .flat_map(|s| s.usage.iter().map(|(id, u)| (id.clone(), u.last_used)))
            .collect();
        WalkKeys { usage, now }
    }

    fn last_used(&self, id: &str) -> i64 {
        self.usage.get(id).copied().flatten().unwrap_or(0)
    }

    fn expired(&self, p: &Profile) -> bool {
        p.credential.expires().is_some_and(|e| self.now >= e)
    }

    /// OpenClaw's key: type, expired oauth last, least recently used first.
    fn openclaw(&self, p: &Profile) -> (u8, bool, i64) {
        let oauth_expired = matches!(p.credential, Credential::OAuth { .. }) && self.expired(p);
        (
            p.credential.type_rank(),
            oauth_expired,
            self.last_used(&p.id),
        )
    }

    /// modelauth's default-order key: type, expired last, least recently used, then id.
    fn modelauth(&self, p: &Profile) -> (u8, bool, i64, String) {
        (
            p.credential.type_rank(),
            self.expired(p),
            self.last_used(&p.id),
            p.id.clone(),
        )
    }

    /// The ids of `cfg` present in the view `v`, stably sorted OpenClaw's way.
    fn openclaw_order(&self, cfg: &[String], v: &BTreeMap<&str, &Profile>) -> Vec<String> {
        let mut l: Vec<&Profile> = cfg
            .iter()
            .filter_map(|id| v.get(id.as_str()).copied())
            .collect();
        l.sort_by_key(|p| self.openclaw(p));
        l.into_iter().map(|p| p.id.clone()).collect()
    }
}

/// The scope views of `provider` that walk without an order of their own: the shared
/// scope, and shared + each agent's own profiles for agents without an order.
fn scope_views<'a>(
    plan: &'a ImportPlan,
    shared_ix: usize,
    provider: &str,
) -> Vec<BTreeMap<&'a str, &'a Profile>> {
    let shared: BTreeMap<&str, &Profile> = plan.scopes[shared_ix]
        .profiles
        .values()
        .filter(|pp| pp.profile.provider == provider)
        .map(|pp| (pp.profile.id.as_str(), &pp.profile))
        .collect();
    let mut views = vec![shared.clone()];
    for s in plan.scopes.iter().filter(|s| s.agent.is_some()) {
        if s.orders.contains_key(provider) {
            continue;
        }
        let mut v = shared.clone();
        for pp in s
            .profiles
            .values()
            .filter(|pp| pp.profile.provider == provider)
        {
            v.insert(pp.profile.id.as_str(), &pp.profile);
        }
        views.push(v);
    }
    views
}

/// Records `ids` as the shared order of `provider`, from openclaw.json `auth.profiles`
/// (`cfg`, for the index of each id), with an `order_from_config` warning.
fn give_config_order(
    plan: &mut ImportPlan,
    shared_ix: usize,
    provider: &str,
    cfg: &[String],
    ids: Vec<String>,
) {
    plan.warnings.push(ImportWarning {
        pointer: "/auth/profiles".into(),
        kind: "order_from_config".into(),
        message: format!(
            "OpenClaw walks {provider} over the profiles listed in openclaw.json auth.profiles; imported as the shared {provider} order so that the picks match"
        ),
        source: Some("openclaw.json".into()),
    });
    let indexes = ids
        .iter()
        .map(|id| cfg.iter().position(|c| c == id).unwrap_or(0))
        .collect();
    plan.scopes[shared_ix].orders.insert(
        provider.to_string(),
        PlannedOrder {
            ids,
            indexes,
            pointer: "/auth/profiles".into(),
            source: Some("openclaw.json /auth/profiles".into()),
        },
    );
}

/// The planned profiles whose openclaw.json `mode` (`modes`: id → mode) names another
/// credential type than the stored one (`api_key`, `token`, `oauth`; `apiKey` and
/// `api-key` spell `api_key`). OpenClaw skips such a profile when it walks; each one is
/// taken out of every planned order with a warning (`mode_mismatch`), and returned so the
/// order made from `auth.profiles` leaves it out too. Pure.
pub(crate) fn mode_mismatches(
    plan: &mut ImportPlan,
    modes: &Map<String, Value>,
    aliases: &Aliases,
) -> Vec<String> {
    let mut out = vec![];
    for (raw, mode) in modes {
        let Some(mode) = mode.as_str() else { continue };
        let mode = match mode.to_ascii_lowercase().replace('-', "_").as_str() {
            "apikey" | "api_key" => "api_key".to_string(),
            m => m.to_string(),
        };
        let Ok((id, _)) = ids::normalize_profile_id(raw, aliases) else {
            continue;
        };
        let stored = plan
            .scopes
            .iter()
            .find_map(|s| s.profiles.get(&id))
            .map(|pp| pp.profile.credential.type_name());
        let Some(stored) = stored else { continue };
        if stored == mode {
            continue;
        }
        for s in plan.scopes.iter_mut() {
            for po in s.orders.values_mut() {
                if let Some(i) = po.ids.iter().position(|x| *x == id) {
                    po.ids.remove(i);
                    if i < po.indexes.len() {
                        po.indexes.remove(i);
                    }
                }
            }
        }
        plan.warnings.push(ImportWarning {
            pointer: format!("/auth/profiles/{}/mode", escape_pointer(raw)),
            kind: "mode_mismatch".into(),
            message: format!(
                "openclaw.json says `{id}` is {mode}, but its credential is {stored}: OpenClaw skips it, so it is left out of the order here"
            ),
            source: Some("openclaw.json".into()),
        });
        out.push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::profile::validate_profile;
    use crate::openclaw::import::{Format, PlannedProfile};
    use serde_json::json;

    fn api(id: &str) -> PlannedProfile {
        let provider = id.split(':').next().unwrap();
        PlannedProfile {
            profile: validate_profile(
                &json!({"id": id, "type": "api_key", "provider": provider, "key": "k"}),
                "",
                &Aliases::new(),
            )
            .unwrap(),
            pointer: String::new(),
        }
    }

    #[test]
    fn config_profiles_become_an_order_only_where_the_walks_differ() {
        let mut shared = ScopePlan::default();
        shared.profiles.insert("p:z".into(), api("p:z"));
        shared.profiles.insert("p:a".into(), api("p:a"));
        shared.profiles.insert("q:a".into(), api("q:a"));
        shared.profiles.insert("q:b".into(), api("q:b"));
        let mut agent = ScopePlan {
            agent: Some("cron".into()),
            ..Default::default()
        };
        agent.profiles.insert("p:m".into(), api("p:m"));
        let mut plan = ImportPlan {
            format: Format::OpenclawState,
            scopes: vec![shared, agent],
            warnings: vec![],
            errors: vec![],
        };
        let cfg: Vec<String> = ["p:z", "p:a", "p:m", "q:a", "q:b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let given = config_profile_orders(&mut plan, &cfg, 0, &Aliases::new());
        // p: OpenClaw walks z, a (file order), modelauth would walk a, z: an order is given,
        // with the agent's id where the config put it. q: the same either way: none.
        assert_eq!(given, ["p"]);
        assert_eq!(plan.scopes[0].orders["p"].ids, ["p:z", "p:a", "p:m"]);
        assert!(!plan.scopes[0].orders.contains_key("q"));
    }
}
