//! *(r3)* What an import brings besides profiles, pure:
//!
//! - OpenClaw's secret providers (openclaw.json `secrets.providers`) turned into modelauth
//!   `settings.secretProviders` entries. They name files and commands, so under the trust
//!   rules (protocol §11) they are imported only with `includeSettings: true`, and each one
//!   is named in the dry run and in `store.validate` ([`SettingAction`]).
//! - The entries of OpenClaw's shared secret store (`state/openclaw.sqlite`,
//!   `secret_store_entries`) that imported `{source: "store"}` SecretRefs name, brought as
//!   the store's own named secrets (protocol §12) ([`SecretAction`]).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::core::profile::SecretSource;
use crate::core::secret_value::{normalize_secret_input, Secret};
use crate::openclaw::import::{ImportAction, ImportPlan, ImportWarning};

/// What an import did (or, dry, would do) with one secret provider, provider registration
/// or setting of the source (protocol §11 r3).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SettingAction {
    /// Where it goes in this store: `/settings/secretProviders/<name>`, `/settings/<key>`
    /// or `/providers/<id>`.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub pointer: String,
    /// `secretProvider`, `setting` or `provider`.
    pub kind: String,
    /// The provider name, setting key or provider id.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub name: String,
    /// `created`, `updated`, `unchanged` or `skipped`.
    pub action: ImportAction,
    /// For `skipped`: `includeSettings` (the param was not set), `exists` (a different
    /// value is kept; see `replace`) or `invalid` (see the warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What it is, for a person to confirm: the source and the file or command it names.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub summary: String,
    /// Where it came from (`openclaw.json /secrets/providers/<name>`, a store file).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::core::error::serialize_redacted_opt")]
    pub source: Option<String>,
}

/// What an import did (or, dry, would do) with one named secret (protocol §12 r3). Never
/// holds the value.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SecretAction {
    /// The `provider` of the `store` SecretRefs that name it.
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub provider: String,
    /// The entry name (the refs' `id`).
    #[serde(serialize_with = "crate::core::error::serialize_redacted")]
    pub id: String,
    /// `created`, `updated`, `unchanged`, `skipped` (reason `exists`) or `missing` (the
    /// source's secret store has no such entry, and neither has this store).
    pub action: ImportAction,
    /// For `skipped`: `exists`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The imported profiles whose refs name it.
    pub profiles: Vec<String>,
}

/// The keys of OpenClaw's provider entries that modelauth keeps, per source; the other
/// keys (`maxBytes`, `noOutputTimeoutMs`, `maxOutputBytes`, `env`, `trustedDirs`,
/// `allowInsecurePath`, `allowSymlinkCommand`, …) are dropped with a warning.
fn kept_keys(source: &str) -> &'static [&'static str] {
    crate::core::settings::SECRET_PROVIDER_KEYS
        .iter()
        .find(|(s, _)| *s == source)
        .map(|(_, k)| *k)
        .unwrap_or(&[])
}

/// One line a person can confirm: `exec /usr/local/bin/vault-get get` or
/// `file /run/secrets/llm.json (json)`.
pub(crate) fn provider_summary(body: &Value) -> String {
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    match s("source") {
        "exec" => {
            let args: Vec<&str> = body
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut line = format!("exec {}", s("command"));
            for a in args {
                line.push(' ');
                line.push_str(a);
            }
            if body.get("jsonOnly") == Some(&Value::Bool(false)) {
                line.push_str(" (raw output)");
            }
            line
        }
        "file" => format!(
            "file {} ({})",
            s("path"),
            body.get("mode").and_then(Value::as_str).unwrap_or("json")
        ),
        other => other.to_string(),
    }
}

/// OpenClaw's `secrets.providers` as modelauth `secretProviders` entries: each entry's
/// modelauth keys kept, the rest dropped with a warning (`field_dropped`); an entry that
/// modelauth cannot use (an unknown source, no command) is left out with a warning
/// (`setting_invalid`). Returns `(name → body, warnings)`.
pub(crate) fn convert_openclaw_providers(
    v: &Value,
    source: &str,
) -> (BTreeMap<String, Value>, Vec<ImportWarning>) {
    let mut out = BTreeMap::new();
    let mut warnings = vec![];
    let warn = |pointer: String, kind: &str, message: String| ImportWarning {
        pointer,
        kind: kind.into(),
        message,
        source: Some(source.to_string()),
    };
    let Some(entries) = v.as_object() else {
        warnings.push(warn(
            "/secrets/providers".into(),
            "setting_invalid",
            "`secrets.providers` is not an object; no secret provider was imported".into(),
        ));
        return (out, warnings);
    };
    for (name, entry) in entries {
        let at = format!("/secrets/providers/{}", escape(name));
        let src = entry.get("source").and_then(Value::as_str).unwrap_or("");
        let keys = kept_keys(src);
        let Some(fields) = entry.as_object().filter(|_| !keys.is_empty()) else {
            warnings.push(warn(
                at,
                "setting_invalid",
                format!("secret provider `{name}` has a source modelauth does not run (`{src}`); it was not imported"),
            ));
            continue;
        };
        let mut body = Map::new();
        for (k, x) in fields {
            if keys.contains(&k.as_str()) {
                body.insert(k.clone(), x.clone());
            } else {
                warnings.push(warn(
                    format!("{at}/{}", escape(k)),
                    "field_dropped",
                    format!("key `{k}` of secret provider `{name}` has no modelauth counterpart; it was not imported"),
                ));
            }
        }
        let one = Value::Object(Map::from_iter([(
            name.clone(),
            Value::Object(body.clone()),
        )]));
        if let Err(e) = crate::core::settings::validate_secret_providers(&one) {
            warnings.push(warn(
                at,
                "setting_invalid",
                format!(
                    "secret provider `{name}` cannot be used by modelauth ({}); it was not imported",
                    e.message
                ),
            ));
            continue;
        }
        out.insert(name.clone(), Value::Object(body));
    }
    (out, warnings)
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The `store` SecretRefs of the planned profiles: `(provider, id)` → the profile ids and
/// the pointers of the refs, in plan order.
pub(crate) fn store_refs(plan: &ImportPlan) -> BTreeMap<(String, String), Vec<(String, String)>> {
    let mut out: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for scope in &plan.scopes {
        for (id, pp) in &scope.profiles {
            if let Some(r) = pp.profile.credential.secret_ref() {
                if r.source == SecretSource::Store {
                    let field = if pp.profile.credential.expires().is_some()
                        || matches!(
                            pp.profile.credential,
                            crate::core::profile::Credential::Token { .. }
                        ) {
                        "tokenRef"
                    } else {
                        "keyRef"
                    };
                    out.entry((r.provider.clone(), r.id.clone()))
                        .or_default()
                        .push((id.clone(), format!("{}/{field}", pp.pointer)));
                }
            }
        }
    }
    out
}

/// The values of the secret-store entries the refs name, from `entries` (`{name: value}`
/// of OpenClaw's store); a value that is not a usable secret counts as missing.
pub(crate) fn referenced_entries(
    refs: &BTreeMap<(String, String), Vec<(String, String)>>,
    entries: &Map<String, Value>,
) -> BTreeMap<(String, String), Secret> {
    let mut out = BTreeMap::new();
    for (provider, id) in refs.keys() {
        if let Some(v) = entries
            .get(id)
            .and_then(Value::as_str)
            .and_then(|v| normalize_secret_input(v).ok())
        {
            out.insert((provider.clone(), id.clone()), v);
        }
    }
    out
}

/// The warning for a `store` ref whose entry is in neither the source nor the store.
pub(crate) fn missing_entry_warning(
    provider: &str,
    id: &str,
    users: &[(String, String)],
) -> ImportWarning {
    let ids: Vec<&str> = users.iter().map(|(p, _)| p.as_str()).collect();
    ImportWarning {
        pointer: users.first().map(|(_, ptr)| ptr.clone()).unwrap_or_default(),
        kind: "store_entry_missing".into(),
        message: format!(
            "SecretRef {{source: store, provider: {provider}, id: {id}}} of {} names no entry of the secret store (OpenClaw: `openclaw secrets store set {id}`); it will not resolve",
            ids.join(", ")
        ),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openclaw_providers_keep_modelauth_keys_and_name_the_rest() {
        let (out, w) = convert_openclaw_providers(
            &json!({
                "files": {"source": "file", "path": "/run/k.json", "mode": "json", "maxBytes": 1000},
                "vault": {"source": "exec", "command": "/usr/bin/v", "args": ["get"], "jsonOnly": true, "allowSymlinkCommand": false},
                "weird": {"source": "plugin", "id": "x"},
                "broken": {"source": "exec"}
            }),
            "openclaw.json",
        );
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["files", "vault"]);
        assert_eq!(
            out["vault"],
            json!({"source": "exec", "command": "/usr/bin/v", "args": ["get"], "jsonOnly": true})
        );
        let kinds: Vec<(&str, &str)> = w
            .iter()
            .map(|w| (w.pointer.as_str(), w.kind.as_str()))
            .collect();
        assert!(kinds.contains(&("/secrets/providers/files/maxBytes", "field_dropped")));
        assert!(kinds.contains(&(
            "/secrets/providers/vault/allowSymlinkCommand",
            "field_dropped"
        )));
        assert!(kinds.contains(&("/secrets/providers/weird", "setting_invalid")));
        assert!(kinds.contains(&("/secrets/providers/broken", "setting_invalid")));
        assert_eq!(provider_summary(&out["vault"]), "exec /usr/bin/v get");
        assert_eq!(provider_summary(&out["files"]), "file /run/k.json (json)");
    }

    #[test]
    fn only_usable_referenced_entries_are_taken() {
        let mut refs = BTreeMap::new();
        refs.insert(("default".into(), "A".into()), vec![]);
        refs.insert(("default".into(), "B".into()), vec![]);
        refs.insert(("default".into(), "C".into()), vec![]);
        let entries = json!({"A": "sk-a", "B": "", "D": "sk-d"});
        let got = referenced_entries(&refs, entries.as_object().unwrap());
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[&("default".to_string(), "A".to_string())].expose(),
            "sk-a"
        );
    }
}
