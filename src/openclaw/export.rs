//! Export (protocol §3 `store.export`): one scope as OpenClaw's `auth-profiles.json` v1
//! document `{version: 1, profiles, order, lastGood, usageStats}`. Pure: the shell
//! ([`crate::handlers::transfer`]) reads the store and passes the parts in.
//!
//! Secrets are `{fingerprint, length}` ([`crate::core::secret_value::Secret::view`]) unless `reveal`;
//! only a revealed export can be imported again. Times are ms since the epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::core::profile::Profile;
use crate::core::usage::Usage;

/// `store.export` params.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ExportParams {
    /// The scope to export: that agent's own profiles, orders and lastGood; omitted = shared.
    #[serde(default)]
    pub agent: Option<String>,
    /// Include the plain secrets (needed to import the document again).
    #[serde(default)]
    pub reveal: bool,
}

/// `store.export` result.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExportResult {
    /// The scope exported.
    pub agent: Option<String>,
    /// OpenClaw's auth-profiles.json v1: `{version: 1, profiles, order, lastGood, usageStats}`.
    pub document: Value,
}

/// A profile as an OpenClaw store entry (`{type, provider, key|keyRef|token|tokenRef|access,
/// refresh, expires, ...}`, no `id`); secrets fingerprinted unless `reveal`.
pub(crate) fn profile_entry(p: &Profile, reveal: bool) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.remove("id");
        if !reveal {
            for f in ["key", "token", "access", "refresh"] {
                if let Some(Value::String(s)) = o.get(f) {
                    let view = crate::core::secret_value::Secret::new(s.clone()).view();
                    o.insert(f.into(), serde_json::to_value(view).unwrap_or(Value::Null));
                }
            }
        }
    }
    v
}

/// Usage state as an OpenClaw `usageStats` entry: `lastUsed`, the cooldown that ends last as
/// `cooldownUntil` / `cooldownReason` / `cooldownModel`, `disabledUntil` / `disabledReason`,
/// `errorCount`, `failureCounts`, `lastFailureAt` (ms since the epoch).
pub(crate) fn usage_to_openclaw(u: &Usage) -> Value {
    let mut o = Map::new();
    if let Some(t) = u.last_used {
        o.insert("lastUsed".into(), t.into());
    }
    if let Some(w) = u.cooldowns.iter().max_by_key(|w| w.until) {
        o.insert("cooldownUntil".into(), w.until.into());
        o.insert("cooldownReason".into(), w.reason.clone().into());
        if let Some(m) = &w.model {
            o.insert("cooldownModel".into(), m.clone().into());
        }
    }
    if let Some(w) = &u.disabled {
        o.insert("disabledUntil".into(), w.until.into());
        o.insert("disabledReason".into(), w.reason.clone().into());
    }
    o.insert("errorCount".into(), u.error_count.into());
    if !u.failure_counts.is_empty() {
        o.insert("failureCounts".into(), json!(u.failure_counts));
    }
    if let Some(t) = u.last_failure_at {
        o.insert("lastFailureAt".into(), t.into());
    }
    Value::Object(o)
}

/// Builds the v1 document from a scope's profiles, orders (provider → ids), lastGood
/// (provider → id) and the usage of its profiles (id → usage). Keys come out sorted.
pub(crate) fn document(
    profiles: &[Profile],
    orders: &[(String, Vec<String>)],
    last_good: &[(String, String)],
    usage: &BTreeMap<String, Usage>,
    reveal: bool,
) -> Value {
    let mut ps = Map::new();
    let mut us = Map::new();
    for p in profiles {
        ps.insert(p.id.clone(), profile_entry(p, reveal));
        if let Some(u) = usage.get(&p.id).filter(|u| **u != Usage::default()) {
            us.insert(p.id.clone(), usage_to_openclaw(u));
        }
    }
    let order: Map<String, Value> = orders
        .iter()
        .map(|(p, ids)| (p.clone(), json!(ids)))
        .collect();
    let lg: Map<String, Value> = last_good
        .iter()
        .map(|(p, id)| (p.clone(), Value::from(id.clone())))
        .collect();
    json!({"version": 1, "profiles": ps, "order": order, "lastGood": lg, "usageStats": us})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::profile::Credential;
    use crate::core::secret_value::Secret;
    use crate::openclaw::import::usage_from_openclaw;

    #[test]
    fn secrets_are_fingerprinted_unless_revealed() {
        let p = Profile {
            id: "openai:a".into(),
            provider: "openai".into(),
            email: None,
            display_name: None,
            credential: Credential::ApiKey {
                key: Some(Secret::new("sk-hidden")),
                key_ref: None,
                metadata: None,
            },
        };
        let e = profile_entry(&p, false);
        assert!(!e.to_string().contains("sk-hidden"));
        assert!(e["key"]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        assert_eq!(profile_entry(&p, true)["key"], "sk-hidden");
        assert!(profile_entry(&p, true).get("id").is_none());
    }

    #[test]
    fn usage_round_trips_through_usage_stats() {
        let src = json!({"lastUsed": 5, "cooldownUntil": 9, "cooldownReason": "rate_limit",
            "errorCount": 2, "failureCounts": {"rate_limit": 2}, "lastFailureAt": 7});
        let u = usage_from_openclaw(&src).unwrap();
        assert_eq!(usage_to_openclaw(&u), src);
    }
}
