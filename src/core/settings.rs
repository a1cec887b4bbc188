//! Settings kept in the store so every process sees them (protocol §3 "settings"):
//! cooldown lengths, cooldown-exempt providers, environment fallback, refresh margin,
//! busy timeout and secret providers. All durations are milliseconds.
//!
//! [`merge_settings`] is pure: stored JSON + given keys → validated effective settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::error::{ErrorKind, RpcError};

/// Cooldown lengths of protocol §4, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub(crate) struct CooldownSettings {
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
pub(crate) enum EnvFallback {
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
pub(crate) enum SecretProvider {
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
        /// `true` (default): stdout is `{"protocolVersion":1,"values":{id: value}}`;
        /// `false` (OpenClaw's key): the whole stdout, one trailing newline dropped, is the
        /// value — `op read`, `pass show`, `secret-tool lookup`, `gh auth token` as they are.
        #[serde(default = "default_json_only", rename = "jsonOnly")]
        json_only: bool,
    },
}

fn default_json_only() -> bool {
    true
}

/// The keys of a `secretProviders` entry per `source` (protocol §5.1); `source` itself
/// is in every list.
pub(crate) const SECRET_PROVIDER_KEYS: [(&str, &[&str]); 3] = [
    ("env", &["source"]),
    ("file", &["source", "path", "mode"]),
    (
        "exec",
        &[
            "source",
            "command",
            "args",
            "timeoutMs",
            "passEnv",
            "jsonOnly",
        ],
    ),
];

/// Longest `timeoutMs` of an exec secret provider (10 min): a resolve waits for it.
pub(crate) const MAX_EXEC_TIMEOUT_MS: u64 = 600_000;

fn provider_error(pointer: String, msg: impl Into<String>, valid: &[&str]) -> RpcError {
    RpcError::new(ErrorKind::InvalidSettings, msg)
        .with("pointer", pointer)
        .with("validKeys", valid)
}

/// Checks the `secretProviders` value given to `settings.set` key by key, so that an
/// unknown key (`passenv`, `timeoutMS`) or a wrong type is refused with the exact pointer
/// (`/settings/secretProviders/vault/timeoutMs`) instead of being dropped. Pure.
///
/// Errors: `invalid_settings` with `data.pointer`, `data.validKeys` and a hint naming the
/// key meant when only its case differs.
pub(crate) fn validate_secret_providers(v: &Value) -> Result<(), RpcError> {
    let base = "/settings/secretProviders";
    let Value::Object(entries) = v else {
        return Err(provider_error(
            base.into(),
            "`secretProviders` must be an object of named providers",
            &[],
        ));
    };
    for (name, entry) in entries {
        let at = format!("{base}/{}", name.replace('~', "~0").replace('/', "~1"));
        validate_provider_entry(&at, name, entry)?;
    }
    Ok(())
}

/// Checks one entry `name` (at pointer `at`) of a `secretProviders` value: an object with
/// a known `source`, only that source's keys, each of its type, and the `path`/`command`
/// the source needs.
fn validate_provider_entry(at: &str, name: &str, entry: &Value) -> Result<(), RpcError> {
    if name.trim().is_empty() {
        return Err(provider_error(
            at.into(),
            "a secret provider needs a non-empty name",
            &[],
        ));
    }
    let Value::Object(fields) = entry else {
        return Err(provider_error(
            at.into(),
            format!("secret provider `{name}` must be an object with a `source`"),
            &[],
        ));
    };
    let sources: Vec<&str> = SECRET_PROVIDER_KEYS.iter().map(|(s, _)| *s).collect();
    let source = fields.get("source");
    let Some((source, keys)) = source
        .and_then(Value::as_str)
        .and_then(|s| SECRET_PROVIDER_KEYS.iter().find(|(k, _)| *k == s))
        .copied()
    else {
        return Err(provider_error(
            format!("{at}/source"),
            format!("secret provider `{name}` needs `source`: env, file or exec"),
            &sources,
        ));
    };
    for k in fields.keys() {
        if !keys.contains(&k.as_str()) {
            let hint = keys
                .iter()
                .find(|x| x.eq_ignore_ascii_case(k))
                .map(|x| format!("did you mean `{x}`?"))
                .unwrap_or_else(|| format!("a `{source}` provider takes: {}", keys.join(", ")));
            return Err(provider_error(
                format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                format!("unknown key `{k}` in secret provider `{name}` (source `{source}`)"),
                keys,
            )
            .with_hint(hint));
        }
    }
    let field = ProviderField { at, name, keys };
    for (key, x) in fields {
        field.check(key, x)?;
    }
    if !fields.contains_key(if source == "exec" { "command" } else { "path" }) && source != "env" {
        let key = if source == "exec" { "command" } else { "path" };
        return Err(field.typed(key, "given (an absolute path)"));
    }
    Ok(())
}

/// The type check of the fields of one secret provider entry.
struct ProviderField<'a> {
    /// The entry's pointer.
    at: &'a str,
    /// The provider's name.
    name: &'a str,
    /// The keys its source takes.
    keys: &'static [&'static str],
}

impl ProviderField<'_> {
    /// The error for field `key` that is not `what`.
    fn typed(&self, key: &str, what: &str) -> RpcError {
        let (at, name) = (self.at, self.name);
        provider_error(
            format!("{at}/{key}"),
            format!("`{key}` of secret provider `{name}` must be {what}"),
            self.keys,
        )
    }

    /// Checks the type of field `key` with value `x`.
    fn check(&self, key: &str, x: &Value) -> Result<(), RpcError> {
        let is_str = |x: &Value| {
            x.as_str()
                .is_some_and(|s| !s.is_empty() && !s.contains('\0'))
        };
        match (key, x) {
            ("source", _) => {}
            ("path" | "command", x) if !is_str(x) => {
                return Err(self.typed(key, "a non-empty string (an absolute path)"))
            }
            ("mode", x) if !matches!(x.as_str(), Some("json" | "singleValue")) => {
                return Err(self.typed(key, "`json` or `singleValue`"))
            }
            ("timeoutMs", x)
                if !x
                    .as_u64()
                    .is_some_and(|t| (1..=MAX_EXEC_TIMEOUT_MS).contains(&t)) =>
            {
                return Err(self.typed(
                    key,
                    &format!("an integer number of milliseconds from 1 to {MAX_EXEC_TIMEOUT_MS}"),
                ));
            }
            ("jsonOnly", x) if !x.is_boolean() => return Err(self.typed(key, "true or false")),
            ("args" | "passEnv", x) => {
                let Some(items) = x.as_array() else {
                    return Err(self.typed(key, "an array of strings"));
                };
                for (i, item) in items.iter().enumerate() {
                    let ok = match key {
                        "args" => item.as_str().is_some_and(|s| !s.contains('\0')),
                        _ => item.as_str().is_some_and(|s| {
                            !s.is_empty() && !s.contains('=') && !s.contains('\0')
                        }),
                    };
                    if !ok {
                        let (at, name) = (self.at, self.name);
                        return Err(provider_error(
                            format!("{at}/{key}/{i}"),
                            format!(
                                "`{key}` of secret provider `{name}` must be an array of {}",
                                if key == "args" {
                                    "strings"
                                } else {
                                    "environment variable names"
                                }
                            ),
                            self.keys,
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
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
pub(crate) struct Settings {
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
    /// The store's named secrets by `(provider, id)`, for `store` SecretRefs (protocol §12
    /// r3). Loaded with the settings from the same transaction; never serialised.
    #[serde(skip)]
    #[schemars(skip)]
    pub named_secrets: BTreeMap<(String, String), crate::core::secret_value::Secret>,
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
            named_secrets: BTreeMap::new(),
        }
    }
}

/// The top-level keys of [`Settings`].
pub(crate) const SETTING_KEYS: [&str; 6] = [
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

/// Upper bound of every duration setting except `busyTimeoutMs`: 365 days in milliseconds.
pub(crate) const MAX_DURATION_MS: i64 = 365 * 86_400_000;
/// Bounds of `busyTimeoutMs` (milliseconds): SQLite takes an `int`, and a process that
/// waits longer than 10 minutes for a lock is better told the store is busy.
pub(crate) const BUSY_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 0..=600_000;
/// Bounds of an exec secret provider's `timeoutMs` (milliseconds).
pub(crate) const EXEC_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=MAX_EXEC_TIMEOUT_MS;
/// At most this many entries in `transientStepsMs`, `cooldownExemptProviders`,
/// `secretProviders` and an exec provider's `args` / `passEnv`.
pub(crate) const MAX_LIST_LEN: usize = 64;

/// Builds the effective settings from the stored keys (unknown or broken ones are ignored).
pub(crate) fn from_stored(stored: &Map<String, Value>) -> Settings {
    from_stored_checked(stored).0
}

/// Builds the effective settings from the stored keys and names the stored keys that were
/// ignored because they do not parse or are out of bounds (their defaults are used
/// instead). A store whose settings were written by a buggy or older build still opens.
pub(crate) fn from_stored_checked(stored: &Map<String, Value>) -> (Settings, Vec<String>) {
    let mut ignored = Vec::new();
    if stored.is_empty() {
        return (Settings::default(), ignored);
    }
    let mut obj = serde_json::to_value(Settings::default()).expect("settings serialise");
    if let Value::Object(o) = &mut obj {
        for (k, v) in stored {
            if SETTING_KEYS.contains(&k.as_str()) {
                let mut trial = o.clone();
                trial.insert(k.clone(), v.clone());
                let ok = serde_json::from_value::<Settings>(Value::Object(trial))
                    .ok()
                    .is_some_and(|s| validate(&s).is_ok());
                if ok {
                    o.insert(k.clone(), v.clone());
                } else {
                    ignored.push(k.clone());
                }
            }
        }
    }
    (serde_json::from_value(obj).unwrap_or_default(), ignored)
}

/// Merges `given` into `stored` (a `cooldowns` object merges key by key) and validates the
/// result. Returns the key/value pairs to store and the effective settings.
///
/// Errors: `invalid_settings` (-32602) naming the key, for unknown keys, wrong types,
/// negative durations, relative paths and commands.
pub(crate) fn merge_settings(
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
        if k == "secretProviders" {
            validate_secret_providers(v)?;
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
                crate::core::error::sanitize_serde_message(&e.to_string())
            ),
        )
    })?;
    validate(&settings)?;
    Ok((to_store, settings))
}

/// Checks the cooldown durations (ms) and steps of settings.
fn validate_cooldowns(c: &CooldownSettings) -> Result<(), RpcError> {
    for (name, v) in [
        ("rateLimitBaseMs", c.rate_limit_base_ms),
        ("rateLimitMaxMs", c.rate_limit_max_ms),
        ("billingBaseMs", c.billing_base_ms),
        ("billingMaxMs", c.billing_max_ms),
        ("authPermanentBaseMs", c.auth_permanent_base_ms),
        ("authPermanentMaxMs", c.auth_permanent_max_ms),
        ("failureWindowMs", c.failure_window_ms),
    ] {
        if !(0..=MAX_DURATION_MS).contains(&v) {
            return Err(invalid(
                &format!("cooldowns/{name}"),
                format!("`{name}` must be 0 to {MAX_DURATION_MS} milliseconds (365 days)"),
            ));
        }
    }
    if c.transient_steps_ms.is_empty()
        || c.transient_steps_ms.len() > MAX_LIST_LEN
        || c.transient_steps_ms
            .iter()
            .any(|v| !(0..=MAX_DURATION_MS).contains(v))
    {
        return Err(invalid(
            "cooldowns/transientStepsMs",
            format!(
                "`transientStepsMs` must be a list of 1 to {MAX_LIST_LEN} durations of 0 to {MAX_DURATION_MS} milliseconds"
            ),
        ));
    }
    Ok(())
}

fn validate(s: &Settings) -> Result<(), RpcError> {
    validate_cooldowns(&s.cooldowns)?;
    if !(0..=MAX_DURATION_MS).contains(&s.refresh_margin_ms) {
        return Err(invalid(
            "refreshMarginMs",
            format!("`refreshMarginMs` must be 0 to {MAX_DURATION_MS} milliseconds"),
        ));
    }
    if !BUSY_TIMEOUT_MS_RANGE.contains(&s.busy_timeout_ms) {
        return Err(invalid(
            "busyTimeoutMs",
            format!(
                "`busyTimeoutMs` must be {} to {} milliseconds",
                BUSY_TIMEOUT_MS_RANGE.start(),
                BUSY_TIMEOUT_MS_RANGE.end()
            ),
        )
        .with_hint("5000 (the default) suits most stores"));
    }
    if s.cooldown_exempt_providers.len() > MAX_LIST_LEN {
        return Err(invalid(
            "cooldownExemptProviders",
            format!("at most {MAX_LIST_LEN} providers"),
        ));
    }
    if s.secret_providers.len() > MAX_LIST_LEN {
        return Err(invalid(
            "secretProviders",
            format!("at most {MAX_LIST_LEN} secret providers"),
        ));
    }
    for (name, p) in &s.secret_providers {
        validate_provider(name, p)?;
    }
    Ok(())
}

/// Checks one parsed secret provider `name`: absolute paths, known modes, the exec
/// timeout range (ms) and list lengths.
fn validate_provider(name: &str, p: &SecretProvider) -> Result<(), RpcError> {
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
        SecretProvider::Exec {
            command,
            timeout_ms,
            args,
            pass_env,
            ..
        } => {
            if !EXEC_TIMEOUT_MS_RANGE.contains(timeout_ms) {
                return Err(invalid(
                    &format!("secretProviders/{name}/timeoutMs"),
                    format!(
                        "`timeoutMs` must be {} to {} milliseconds",
                        EXEC_TIMEOUT_MS_RANGE.start(),
                        EXEC_TIMEOUT_MS_RANGE.end()
                    ),
                ));
            }
            if args.len() > MAX_LIST_LEN || pass_env.len() > MAX_LIST_LEN {
                return Err(invalid(
                    &format!("secretProviders/{name}"),
                    format!("at most {MAX_LIST_LEN} `args` and `passEnv` entries"),
                ));
            }
            if !command.starts_with('/') {
                return Err(invalid(
                    &format!("secretProviders/{name}/command"),
                    "`command` must be an absolute path",
                ));
            }
        }
        SecretProvider::Env {} => {}
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
    fn every_setting_is_bounded() {
        for bad in [
            json!({"busyTimeoutMs": 3_000_000_000u64}),
            json!({"busyTimeoutMs": 600_001}),
            json!({"refreshMarginMs": MAX_DURATION_MS + 1}),
            json!({"cooldowns": {"rateLimitMaxMs": i64::MAX}}),
            json!({"cooldowns": {"transientStepsMs": [1, MAX_DURATION_MS + 1]}}),
            json!({"cooldowns": {"transientStepsMs": vec![1; MAX_LIST_LEN + 1]}}),
            json!({"secretProviders": {"v": {"source": "exec", "command": "/bin/true", "timeoutMs": 0}}}),
            json!({"secretProviders": {"v": {"source": "exec", "command": "/bin/true", "timeoutMs": MAX_EXEC_TIMEOUT_MS + 1}}}),
        ] {
            let e = merge_settings(&Map::new(), &obj(bad.clone())).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidSettings, "{bad}");
        }
        let (_, s) = merge_settings(&Map::new(), &obj(json!({"busyTimeoutMs": 600_000}))).unwrap();
        assert_eq!(s.busy_timeout_ms, 600_000);
    }

    #[test]
    fn bad_stored_settings_are_ignored_and_named() {
        let stored = obj(json!({"busyTimeoutMs": 3_000_000_000u64, "refreshMarginMs": 1000}));
        let (s, ignored) = from_stored_checked(&stored);
        assert_eq!(s.busy_timeout_ms, 5000);
        assert_eq!(s.refresh_margin_ms, 1000);
        assert_eq!(ignored, vec!["busyTimeoutMs".to_string()]);
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

    #[test]
    fn secret_provider_keys_are_checked_with_exact_pointers() {
        let ptr = |v: Value| {
            validate_secret_providers(&v).unwrap_err().data()["pointer"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            ptr(json!({"vault": {"source": "exec", "command": "/x", "timeoutMs": true}})),
            "/settings/secretProviders/vault/timeoutMs"
        );
        assert_eq!(
            ptr(json!({"a/b": {"source": "exec", "command": "/x", "passEnv": ["A=B"]}})),
            "/settings/secretProviders/a~1b/passEnv/0"
        );
        assert_eq!(
            ptr(
                json!({"v": {"source": "exec", "command": "/x", "timeoutMs": MAX_EXEC_TIMEOUT_MS + 1}})
            ),
            "/settings/secretProviders/v/timeoutMs"
        );
        let e = validate_secret_providers(
            &json!({"v": {"source": "exec", "command": "/x", "passenv": []}}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidSettings);
        assert_eq!(e.hint.as_deref(), Some("did you mean `passEnv`?"));
        assert!(validate_secret_providers(&json!({
            "v": {"source": "exec", "command": "/x", "args": [], "timeoutMs": 1, "passEnv": [], "jsonOnly": false},
            "f": {"source": "file", "path": "/x"},
            "e": {"source": "env"}
        }))
        .is_ok());
        // merge_settings refuses through it, and the typed value keeps jsonOnly.
        let (_, s) = merge_settings(
            &Map::new(),
            &obj(json!({"secretProviders": {"v": {"source": "exec", "command": "/x", "jsonOnly": false}}})),
        )
        .unwrap();
        assert!(matches!(
            s.secret_providers["v"],
            SecretProvider::Exec {
                json_only: false,
                ..
            }
        ));
    }
}
