//! Settings kept in the store so every process sees them (protocol §3 "settings"):
//! cooldown lengths, cooldown-exempt providers, environment fallback, refresh margin,
//! busy timeout and secret providers. All durations are milliseconds.
//!
//! [`merge_settings`] is pure: stored JSON + given keys → validated effective settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ErrorKind, RpcError};

/// Cooldown lengths of protocol §4, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CooldownSettings {
    /// First rate-limit cooldown; doubles per consecutive rate limit.
    pub rate_limit_base_ms: i64,
    /// Cap of the rate-limit cooldown.
    pub rate_limit_max_ms: i64,
    /// Steps for timeout, model_not_found, overloaded, format, auth, unknown (by error count).
    pub transient_steps_ms: Vec<i64>,
    /// First billing disable window; doubles.
    pub billing_base_ms: i64,
    /// Cap of the billing window.
    pub billing_max_ms: i64,
    /// First auth_permanent disable window; doubles.
    pub auth_permanent_base_ms: i64,
    /// Cap of the auth_permanent window.
    pub auth_permanent_max_ms: i64,
    /// A failure more than this after the previous window ended restarts the count at 1.
    pub failure_window_ms: i64,
}

impl Default for CooldownSettings {
    fn default() -> Self {
        CooldownSettings {
            rate_limit_base_ms: 30_000,
            rate_limit_max_ms: 86_400_000,
            transient_steps_ms: vec![30_000, 60_000, 300_000],
            billing_base_ms: 600_000,
            billing_max_ms: 86_400_000,
            auth_permanent_base_ms: 600_000,
            auth_permanent_max_ms: 3_600_000,
            failure_window_ms: 86_400_000,
        }
    }
}

/// When environment keys (protocol §6) are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EnvFallback {
    /// Never.
    Never,
    /// Only when the provider has no stored profile in the scope view (the default).
    WhenNoProfiles,
    /// Whenever no stored profile is usable.
    Always,
}

/// A secret provider named by SecretRefs (`settings.secretProviders.<name>`, protocol §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum SecretProvider {
    /// Environment variables (no options).
    Env {},
    /// A file: `path` absolute, `mode` `json` (id is a JSON pointer) or `singleValue`.
    File {
        /// Absolute path.
        path: String,
        /// `json` (default) or `singleValue`.
        #[serde(default = "default_file_mode")]
        mode: String,
    },
    /// A command run without a shell.
    Exec {
        /// Absolute path of the command.
        command: String,
        /// Arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Kill after this many milliseconds (default 5000).
        #[serde(default = "default_exec_timeout", rename = "timeoutMs")]
        timeout_ms: u64,
        /// Environment variable names passed through.
        #[serde(default, rename = "passEnv")]
        pass_env: Vec<String>,
    },
}

fn default_file_mode() -> String {
    "json".to_string()
}
fn default_exec_timeout() -> u64 {
    5000
}

/// The effective settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    /// Cooldown lengths.
    pub cooldowns: CooldownSettings,
    /// Providers whose failures record nothing (OpenClaw: openrouter, kilocode).
    pub cooldown_exempt_providers: Vec<String>,
    /// When environment keys are used.
    pub env_fallback: EnvFallback,
    /// Refresh an OAuth access token this long before it expires.
    pub refresh_margin_ms: i64,
    /// How long a process waits for another's write lock.
    pub busy_timeout_ms: u64,
    /// Secret providers by name.
    pub secret_providers: BTreeMap<String, SecretProvider>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cooldowns: CooldownSettings::default(),
            cooldown_exempt_providers: vec!["openrouter".into(), "kilocode".into()],
            env_fallback: EnvFallback::WhenNoProfiles,
            refresh_margin_ms: 300_000,
            busy_timeout_ms: 5000,
            secret_providers: BTreeMap::new(),
        }
    }
}

/// The top-level keys of [`Settings`].
pub const SETTING_KEYS: [&str; 6] = [
    "cooldowns",
    "cooldownExemptProviders",
    "envFallback",
    "refreshMarginMs",
    "busyTimeoutMs",
    "secretProviders",
];

fn invalid(key: &str, msg: impl Into<String>) -> RpcError {
    RpcError::new(ErrorKind::InvalidSettings, msg)
        .with("pointer", format!("/settings/{key}"))
        .with("validKeys", SETTING_KEYS)
}

/// Builds the effective settings from the stored keys (unknown or broken ones are ignored).
pub fn from_stored(stored: &Map<String, Value>) -> Settings {
    if stored.is_empty() {
        return Settings::default();
    }
    let mut obj = serde_json::to_value(Settings::default()).expect("settings serialise");
    if let Value::Object(o) = &mut obj {
        for (k, v) in stored {
            if SETTING_KEYS.contains(&k.as_str()) {
                let mut trial = o.clone();
                trial.insert(k.clone(), v.clone());
                if serde_json::from_value::<Settings>(Value::Object(trial)).is_ok() {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
    }
    serde_json::from_value(obj).unwrap_or_default()
}

/// Merges `given` into `stored` (a `cooldowns` object merges key by key) and validates the
/// result. Returns the key/value pairs to store and the effective settings.
///
/// Errors: `invalid_settings` (-32602) naming the key, for unknown keys, wrong types,
/// negative durations, relative paths and commands.
pub fn merge_settings(
    stored: &Map<String, Value>,
    given: &Map<String, Value>,
) -> Result<(Map<String, Value>, Settings), RpcError> {
    let current = serde_json::to_value(from_stored(stored)).expect("settings serialise");
    let Value::Object(mut merged) = current else {
        unreachable!()
    };
    let mut to_store = Map::new();
    for (k, v) in given {
        if !SETTING_KEYS.contains(&k.as_str()) {
            let hint = SETTING_KEYS
                .iter()
                .find(|s| s.eq_ignore_ascii_case(k))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("valid keys: {}", SETTING_KEYS.join(", ")));
            return Err(invalid(k, format!("unknown setting `{k}`")).with_hint(hint));
        }
        let value = if k == "cooldowns" {
            let Value::Object(given_cd) = v else {
                return Err(invalid(k, "`cooldowns` must be an object"));
            };
            let mut cd = merged
                .get("cooldowns")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (ck, cv) in given_cd {
                if !cd.contains_key(ck) {
                    return Err(invalid(
                        &format!("cooldowns/{ck}"),
                        format!("unknown cooldown setting `{ck}`"),
                    )
                    .with_hint(format!(
                        "valid keys: {}",
                        cd.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                cd.insert(ck.clone(), cv.clone());
            }
            Value::Object(cd)
        } else {
            v.clone()
        };
        merged.insert(k.clone(), value.clone());
        to_store.insert(k.clone(), value);
    }
    let settings: Settings = serde_json::from_value(Value::Object(merged)).map_err(|e| {
        invalid(
            "",
            format!(
                "invalid settings: {}",
                crate::rpc::sanitize_serde_message(&e.to_string())
            ),
        )
    })?;
    validate(&settings)?;
    Ok((to_store, settings))
}

fn validate(s: &Settings) -> Result<(), RpcError> {
    let c = &s.cooldowns;
    for (name, v) in [
        ("rateLimitBaseMs", c.rate_limit_base_ms),
        ("rateLimitMaxMs", c.rate_limit_max_ms),
        ("billingBaseMs", c.billing_base_ms),
        ("billingMaxMs", c.billing_max_ms),
        ("authPermanentBaseMs", c.auth_permanent_base_ms),
        ("authPermanentMaxMs", c.auth_permanent_max_ms),
        ("failureWindowMs", c.failure_window_ms),
    ] {
        if v < 0 {
            return Err(invalid(
                &format!("cooldowns/{name}"),
                format!("`{name}` must be >= 0 milliseconds"),
            ));
        }
    }
    if c.transient_steps_ms.is_empty() || c.transient_steps_ms.iter().any(|v| *v < 0) {
        return Err(invalid(
            "cooldowns/transientStepsMs",
            "`transientStepsMs` must be a non-empty list of milliseconds >= 0",
        ));
    }
    if s.refresh_margin_ms < 0 {
        return Err(invalid("refreshMarginMs", "`refreshMarginMs` must be >= 0"));
    }
    for (name, p) in &s.secret_providers {
        match p {
            SecretProvider::File { path, mode } => {
                if !path.starts_with('/') {
                    return Err(invalid(
                        &format!("secretProviders/{name}/path"),
                        "`path` must be absolute",
                    ));
                }
                if mode != "json" && mode != "singleValue" {
                    return Err(invalid(
                        &format!("secretProviders/{name}/mode"),
                        "`mode` is json or singleValue",
                    ));
                }
            }
            SecretProvider::Exec { command, .. } => {
                if !command.starts_with('/') {
                    return Err(invalid(
                        &format!("secretProviders/{name}/command"),
                        "`command` must be an absolute path",
                    ));
                }
            }
            SecretProvider::Env {} => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_are_those_of_the_protocol() {
        let s = serde_json::to_value(Settings::default()).unwrap();
        assert_eq!(
            s["cooldowns"]["transientStepsMs"],
            json!([30000, 60000, 300000])
        );
        assert_eq!(s["envFallback"], "whenNoProfiles");
        assert_eq!(
            s["cooldownExemptProviders"],
            json!(["openrouter", "kilocode"])
        );
        assert_eq!(s["refreshMarginMs"], 300000);
    }

    #[test]
    fn cooldowns_merge_key_by_key() {
        let (store, s) = merge_settings(
            &Map::new(),
            &obj(json!({"cooldowns": {"rateLimitBaseMs": 100}})),
        )
        .unwrap();
        assert_eq!(s.cooldowns.rate_limit_base_ms, 100);
        assert_eq!(s.cooldowns.billing_base_ms, 600_000);
        let (_, s2) = merge_settings(&store, &obj(json!({"envFallback": "never"}))).unwrap();
        assert_eq!(s2.cooldowns.rate_limit_base_ms, 100);
        assert_eq!(s2.env_fallback, EnvFallback::Never);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_invalid_settings() {
        let e = merge_settings(&Map::new(), &obj(json!({"envfallback": "never"}))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSettings);
        assert_eq!(e.hint.unwrap(), "did you mean `envFallback`?");
        let e = merge_settings(&Map::new(), &obj(json!({"cooldowns": {"nope": 1}}))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSettings);
        let e = merge_settings(&Map::new(), &obj(json!({"envFallback": "sometimes"}))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSettings);
        let e = merge_settings(
            &Map::new(),
            &obj(json!({"secretProviders": {"v": {"source": "exec", "command": "vault"}}})),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSettings);
    }
}
