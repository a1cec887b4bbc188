//! Auth profiles: the stored shape, the validation of protocol §2.2 and the
//! `ProfileView` callers see.
//!
//! [`validate_profile`] is pure: it takes the caller's JSON and the alias map and returns
//! a [`Profile`] or an `invalid_profile` error with a JSON pointer, `validTypes` and, for a
//! near miss, a hint. Secrets are normalised on the way in ([`crate::core::secret_value`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::error::{ErrorKind, RpcError};
use crate::core::ids::{self, Aliases};
use crate::core::secret_value::{normalize_secret_input, Secret, SecretInputError, SecretView};

/// The valid profile `type` values, as listed in every `invalid_profile` error.
pub const VALID_TYPES: [&str; 3] = ["api_key", "oauth", "token"];

/// A reference to a secret kept elsewhere: `{source, provider, id}` (protocol §2.2, §5.1;
/// OpenClaw's SecretRef). What it points at is resolved at `auth.resolve` time and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Where the secret lives.
    pub source: SecretSource,
    /// A name in `settings.secretProviders` (`default` for `env` needs no entry).
    pub provider: String,
    /// The variable name (`env`), JSON pointer or `value` (`file`), or the id passed to the command (`exec`).
    pub id: String,
}

/// The source kinds of a [`SecretRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable of the helper process.
    Env,
    /// A file named by `settings.secretProviders.<provider>`.
    File,
    /// A command named by `settings.secretProviders.<provider>`.
    Exec,
    /// A named secret kept in the store itself (OpenClaw 2026.9's shared secret store,
    /// protocol §12 r3): `{source: "store", provider: "default", id: "NAME"}`.
    Store,
}

/// The credential of a profile, tagged by `type` (protocol §2.2 table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Credential {
    /// A provider API key: literal `key` or `keyRef` (exactly one).
    #[serde(rename = "api_key")]
    ApiKey {
        /// The key itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<Secret>,
        /// Where to find the key instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_ref: Option<SecretRef>,
        /// Free string→string metadata.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<BTreeMap<String, String>>,
    },
    /// A static bearer token (for example a setup token): literal `token` or `tokenRef`.
    #[serde(rename = "token")]
    Token {
        /// The token itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
        /// Where to find the token instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_ref: Option<SecretRef>,
        /// Expiry, milliseconds since the Unix epoch; absent = never expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<i64>,
    },
    /// An OAuth credential (RFC 6749): access and refresh token, refreshable at `tokenUrl`.
    #[serde(rename = "oauth")]
    OAuth {
        /// The access token sent to the provider.
        access: Secret,
        /// The refresh token (RFC 6749 §6).
        refresh: Secret,
        /// When `access` expires, milliseconds since the Unix epoch.
        expires: i64,
        /// The token endpoint; else the provider's `oauth.tokenUrl`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_url: Option<String>,
        /// The OAuth client id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The provider's account id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account_id: Option<String>,
    },
}

/// A credential's type (protocol §2.2 `type`): the fixed set of kinds a profile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CredentialType {
    /// A static API key.
    #[serde(rename = "api_key")]
    ApiKey,
    /// A static bearer token, optionally with `expires`.
    #[serde(rename = "token")]
    Token,
    /// OAuth access and refresh tokens (RFC 6749).
    #[serde(rename = "oauth")]
    OAuth,
}

impl CredentialType {
    /// The wire string: `api_key`, `token` or `oauth`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialType::ApiKey => "api_key",
            CredentialType::Token => "token",
            CredentialType::OAuth => "oauth",
        }
    }
}

impl Credential {
    /// The credential's type.
    pub fn credential_type(&self) -> CredentialType {
        match self {
            Credential::ApiKey { .. } => CredentialType::ApiKey,
            Credential::Token { .. } => CredentialType::Token,
            Credential::OAuth { .. } => CredentialType::OAuth,
        }
    }

    /// `api_key`, `token` or `oauth`.
    pub fn type_name(&self) -> &'static str {
        self.credential_type().as_str()
    }

    /// Expiry in milliseconds since the epoch, when the credential has one.
    pub fn expires(&self) -> Option<i64> {
        match self {
            Credential::ApiKey { .. } => None,
            Credential::Token { expires, .. } => *expires,
            Credential::OAuth { expires, .. } => Some(*expires),
        }
    }

    /// The literal secret to send (key, token or access token), if stored inline.
    pub fn inline_secret(&self) -> Option<&Secret> {
        match self {
            Credential::ApiKey { key, .. } => key.as_ref(),
            Credential::Token { token, .. } => token.as_ref(),
            Credential::OAuth { access, .. } => Some(access),
        }
    }

    /// The SecretRef, if the secret lives elsewhere.
    pub fn secret_ref(&self) -> Option<&SecretRef> {
        match self {
            Credential::ApiKey { key_ref, .. } => key_ref.as_ref(),
            Credential::Token { token_ref, .. } => token_ref.as_ref(),
            Credential::OAuth { .. } => None,
        }
    }

    /// Sort rank of the default order: oauth (0) before token (1) before api_key (2).
    pub fn type_rank(&self) -> u8 {
        match self {
            Credential::OAuth { .. } => 0,
            Credential::Token { .. } => 1,
            Credential::ApiKey { .. } => 2,
        }
    }
}

/// An auth profile as stored: id `<provider>:<name>`, provider, optional `email` and
/// `displayName`, and the credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// `<provider>:<name>`, provider part normalised.
    pub id: String,
    /// Normalised provider id.
    pub provider: String,
    /// The account's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The credential, tagged by `type`.
    #[serde(flatten)]
    pub credential: Credential,
}

fn invalid(pointer: &str, message: impl Into<String>) -> RpcError {
    RpcError::new(ErrorKind::InvalidProfile, message)
        .with("pointer", pointer)
        .with("validTypes", VALID_TYPES)
}

const COMMON_FIELDS: &[&str] = &["id", "type", "provider", "email", "displayName"];
const API_KEY_FIELDS: &[&str] = &["key", "keyRef", "metadata"];
const TOKEN_FIELDS: &[&str] = &["token", "tokenRef", "expires"];
const OAUTH_FIELDS: &[&str] = &[
    "access",
    "refresh",
    "expires",
    "tokenUrl",
    "clientId",
    "accountId",
];

/// The fields a profile of type `ty` may carry (common ones included), as
/// [`validate_profile`] accepts them; empty for an unknown type.
pub fn allowed_fields(ty: &str) -> Vec<&'static str> {
    let own: &[&str] = match ty {
        "api_key" => API_KEY_FIELDS,
        "token" => TOKEN_FIELDS,
        "oauth" => OAUTH_FIELDS,
        _ => return vec![],
    };
    COMMON_FIELDS.iter().chain(own).copied().collect()
}

/// The field a near-miss name most likely meant (`apiKey` → `key`, `mode` → `type`).
fn near_miss_field(name: &str, ty: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase().replace(['_', '-'], "");
    let m = match lower.as_str() {
        "apikey" | "secret" | "value" => {
            if ty == "token" {
                "token"
            } else {
                "key"
            }
        }
        "mode" | "kind" | "authtype" => "type",
        "accesstoken" => "access",
        "refreshtoken" => "refresh",
        "expiresat" | "expiry" | "expiresin" | "expiration" => "expires",
        "keyref" | "apikeyref" => "keyRef",
        "tokenref" => "tokenRef",
        "tokenurl" | "tokenendpoint" => "tokenUrl",
        "clientid" => "clientId",
        "accountid" => "accountId",
        "displayname" | "name" => "displayName",
        "mail" => "email",
        "profileid" => "id",
        "bearer" | "bearertoken" => "token",
        _ => return None,
    };
    Some(m)
}

fn near_miss_type(t: &str) -> Option<&'static str> {
    let lower = t.to_ascii_lowercase().replace(['_', '-', ' '], "");
    match lower.as_str() {
        "apikey" | "key" | "api" => Some("api_key"),
        "bearer" | "static" | "pat" | "setuptoken" | "accesstoken" | "tokens" => Some("token"),
        "oauth2" | "oauth" | "oidc" => Some("oauth"),
        _ => None,
    }
}

fn type_error(pointer: &str, got: Option<&Value>) -> RpcError {
    let shown = match got {
        Some(Value::String(s)) if s.chars().count() <= 32 => format!("`{s}`"),
        Some(Value::String(_)) => "a long string".to_string(),
        Some(v) => json_type_name(v).to_string(),
        None => "nothing".to_string(),
    };
    let mut e = invalid(
        pointer,
        format!("profile type {shown} is not one of api_key, oauth, token"),
    );
    let hint = match got {
        Some(Value::String(s)) => near_miss_type(s).map(|t| format!("did you mean `{t}`?")),
        _ => None,
    };
    e = e.with_hint(hint.unwrap_or_else(|| {
        "`type` is one of api_key (a provider API key in `key`), token (a bearer token in `token`) or oauth (`access`, `refresh`, `expires`)".to_string()
    }));
    e
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn get_string(
    obj: &Map<String, Value>,
    field: &str,
    base: &str,
) -> Result<Option<String>, RpcError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.chars().any(char::is_control) {
                return Err(invalid(
                    &format!("{base}/{field}"),
                    format!("`{field}` must not contain control characters"),
                ));
            }
            if s.len() > 2048 {
                return Err(invalid(
                    &format!("{base}/{field}"),
                    format!("`{field}` is too long"),
                ));
            }
            Ok(Some(s.trim().to_string()))
        }
        Some(v) => Err(invalid(
            &format!("{base}/{field}"),
            format!("`{field}` must be a string, not {}", json_type_name(v)),
        )),
    }
}

/// Parses an epoch-milliseconds integer field; floats, strings and values <= 0 are refused.
fn get_millis(obj: &Map<String, Value>, field: &str, base: &str) -> Result<Option<i64>, RpcError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v > 0 => Ok(Some(v)),
            _ => Err(invalid(
                &format!("{base}/{field}"),
                format!("`{field}` must be a positive integer: milliseconds since the Unix epoch"),
            )),
        },
        Some(v) => Err(invalid(
            &format!("{base}/{field}"),
            format!(
                "`{field}` must be an integer (milliseconds since the Unix epoch), not {}",
                json_type_name(v)
            ),
        )),
    }
}

fn get_secret(
    obj: &Map<String, Value>,
    field: &str,
    base: &str,
    ref_field: Option<&str>,
) -> Result<Option<Secret>, RpcError> {
    let pointer = format!("{base}/{field}");
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match normalize_secret_input(s) {
            Ok(secret) => Ok(Some(secret)),
            Err(SecretInputError::Empty) => Err(invalid(&pointer, format!("`{field}` is empty"))),
            Err(SecretInputError::ControlCharacter) => Err(invalid(
                &pointer,
                format!("`{field}` contains a control character"),
            )),
        },
        Some(Value::Object(_)) => {
            let e = invalid(&pointer, format!("`{field}` must be a string"));
            Err(match ref_field {
                Some(r) => e.with_hint(format!("a SecretRef goes in `{r}`, not `{field}`")),
                None => e.with_hint(
                    "oauth credentials are stored inline; SecretRefs are not allowed for oauth",
                ),
            })
        }
        Some(v) => Err(invalid(
            &pointer,
            format!("`{field}` must be a string, not {}", json_type_name(v)),
        )),
    }
}

/// Validates a SecretRef object at `pointer` (exactly `source`, `provider`, `id`).
pub fn validate_secret_ref(v: &Value, pointer: &str) -> Result<SecretRef, RpcError> {
    let Value::Object(o) = v else {
        return Err(invalid(
            pointer,
            "a SecretRef is an object {source: env|file|exec|store, provider, id}",
        ));
    };
    for k in o.keys() {
        if !matches!(k.as_str(), "source" | "provider" | "id") {
            return Err(invalid(
                &format!("{pointer}/{}", escape_pointer(k)),
                format!(
                    "unknown SecretRef field `{}`; a SecretRef has exactly source, provider, id",
                    short(k)
                ),
            ));
        }
    }
    let source = match o.get("source") {
        Some(Value::String(s)) if s == "env" => SecretSource::Env,
        Some(Value::String(s)) if s == "file" => SecretSource::File,
        Some(Value::String(s)) if s == "exec" => SecretSource::Exec,
        Some(Value::String(s)) if s == "store" => SecretSource::Store,
        _ => {
            return Err(invalid(
                &format!("{pointer}/source"),
                "SecretRef `source` must be one of env, file, exec, store",
            ))
        }
    };
    let provider = match o.get("provider") {
        Some(Value::String(s)) if is_ref_provider(s) => s.clone(),
        _ => {
            return Err(invalid(
                &format!("{pointer}/provider"),
                "SecretRef `provider` must be a name such as `default` (^[a-z0-9][a-z0-9._-]{0,63}$)",
            )
            .with_hint("use {\"source\":\"env\",\"provider\":\"default\",\"id\":\"OPENAI_API_KEY\"} for an environment variable"))
        }
    };
    let id = match o.get("id") {
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        _ => {
            return Err(invalid(
                &format!("{pointer}/id"),
                "SecretRef `id` must be a non-empty string",
            ))
        }
    };
    if source == SecretSource::Env
        && !(id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(invalid(
            &format!("{pointer}/id"),
            "an env SecretRef `id` is an environment variable name such as OPENAI_API_KEY",
        ));
    }
    if source == SecretSource::Store && !is_store_ref_id(&id) {
        return Err(invalid(
            &format!("{pointer}/id"),
            "a store SecretRef `id` is a name such as OPENAI_API_KEY (^[A-Z][A-Z0-9_]{0,127}$, OpenClaw's store name rule)",
        ));
    }
    Ok(SecretRef {
        source,
        provider,
        id,
    })
}

/// OpenClaw's rule for a `store` SecretRef id (the store entry name): `^[A-Z][A-Z0-9_]{0,127}$`.
pub fn is_store_ref_id(id: &str) -> bool {
    id.len() <= 128
        && id.starts_with(|c: char| c.is_ascii_uppercase())
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_ref_provider(s: &str) -> bool {
    ids::validate_agent(s).is_ok()
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901: `~` → `~0`, `/` → `~1`).
pub fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Validates a profile given by a caller (protocol §2.2) at JSON pointer `base`
/// (`/profile` for `profiles.put`).
///
/// Errors: `invalid_profile` (-32602) with `data.pointer`, `data.validTypes` and, for a near
/// miss, `data.hint`; `provider_mismatch` when `provider` and the id's provider part differ.
/// No error message contains a secret value.
pub fn validate_profile(v: &Value, base: &str, aliases: &Aliases) -> Result<Profile, RpcError> {
    let Value::Object(o) = v else {
        return Err(invalid(
            base,
            format!("a profile is a JSON object, not {}", json_type_name(v)),
        )
        .with_hint(EXAMPLE_HINT));
    };
    // 1. type
    let ty = match o.get("type") {
        Some(Value::String(t)) if VALID_TYPES.contains(&t.as_str()) => t.as_str(),
        Some(other) => return Err(type_error(&format!("{base}/type"), Some(other))),
        None => {
            if o.contains_key("mode") {
                return Err(invalid(&format!("{base}/mode"), "unknown field `mode`")
                    .with_hint("did you mean `type`?"));
            }
            return Err(type_error(&format!("{base}/type"), None));
        }
    };
    // 2. unknown fields, with near-miss hints
    let own: &[&str] = match ty {
        "api_key" => API_KEY_FIELDS,
        "token" => TOKEN_FIELDS,
        _ => OAUTH_FIELDS,
    };
    for k in o.keys() {
        if COMMON_FIELDS.contains(&k.as_str()) || own.contains(&k.as_str()) {
            continue;
        }
        let pointer = format!("{base}/{}", escape_pointer(k));
        let mut e = invalid(
            &pointer,
            format!("unknown field `{}` for type {ty}", short(k)),
        );
        if let Some(m) = near_miss_field(k, ty) {
            e = e.with_hint(format!("did you mean `{m}`?"));
        } else if let Some(t) = [
            ("api_key", API_KEY_FIELDS),
            ("token", TOKEN_FIELDS),
            ("oauth", OAUTH_FIELDS),
        ]
        .iter()
        .find(|(_, f)| f.contains(&k.as_str()))
        .map(|(t, _)| *t)
        {
            e = e.with_hint(format!(
                "`{k}` belongs to type {t}; fields of {ty}: {}",
                own.join(", ")
            ));
        } else {
            e = e.with_hint(format!(
                "fields of {ty}: {}, plus id, provider, email, displayName",
                own.join(", ")
            ));
        }
        return Err(e);
    }
    // 3. id and provider
    let raw_id = match o.get("id") {
        Some(Value::String(s)) => s,
        Some(v) => {
            return Err(invalid(
                &format!("{base}/id"),
                format!(
                    "`id` must be a string such as `openai:default`, not {}",
                    json_type_name(v)
                ),
            ))
        }
        None => {
            return Err(
                invalid(&format!("{base}/id"), "missing `id` (`<provider>:<name>`)")
                    .with_hint(EXAMPLE_HINT),
            )
        }
    };
    let (id, id_provider) = ids::normalize_profile_id(raw_id, aliases)
        .map_err(|e| invalid(&format!("{base}/id"), e.to_string()))?;
    let provider = match o.get("provider") {
        None | Some(Value::Null) => id_provider.clone(),
        Some(Value::String(p)) => {
            let p = ids::normalize_provider(p, aliases)
                .map_err(|e| invalid(&format!("{base}/provider"), e.to_string()))?;
            if p != id_provider {
                return Err(RpcError::new(
                    ErrorKind::ProviderMismatch,
                    format!("profile id `{id}` belongs to provider `{id_provider}`, but `provider` is `{p}`"),
                )
                .with("pointer", format!("{base}/provider"))
                .with_hint(format!("use id `{p}:<name>` or provider `{id_provider}`")));
            }
            p
        }
        Some(v) => {
            return Err(invalid(
                &format!("{base}/provider"),
                format!("`provider` must be a string, not {}", json_type_name(v)),
            ))
        }
    };
    let email = get_string(o, "email", base)?;
    let display_name = get_string(o, "displayName", base)?;
    // 4. the credential
    let credential = match ty {
        "api_key" => {
            let key = get_secret(o, "key", base, Some("keyRef"))?;
            let key_ref = match o.get("keyRef") {
                None | Some(Value::Null) => None,
                Some(v) => Some(validate_secret_ref(v, &format!("{base}/keyRef"))?),
            };
            exactly_one(key.is_some(), key_ref.is_some(), base, "key", "keyRef")?;
            let metadata = match o.get("metadata") {
                None | Some(Value::Null) => None,
                Some(Value::Object(m)) => {
                    let mut out = BTreeMap::new();
                    for (k, v) in m {
                        match v {
                            Value::String(s) => {
                                out.insert(k.clone(), s.clone());
                            }
                            _ => {
                                return Err(invalid(
                                    &format!("{base}/metadata/{}", escape_pointer(k)),
                                    "metadata values must be strings",
                                ))
                            }
                        }
                    }
                    Some(out)
                }
                Some(_) => {
                    return Err(invalid(
                        &format!("{base}/metadata"),
                        "`metadata` must be an object of strings",
                    ))
                }
            };
            Credential::ApiKey {
                key,
                key_ref,
                metadata,
            }
        }
        "token" => {
            let token = get_secret(o, "token", base, Some("tokenRef"))?;
            let token_ref = match o.get("tokenRef") {
                None | Some(Value::Null) => None,
                Some(v) => Some(validate_secret_ref(v, &format!("{base}/tokenRef"))?),
            };
            exactly_one(
                token.is_some(),
                token_ref.is_some(),
                base,
                "token",
                "tokenRef",
            )?;
            let expires = get_millis(o, "expires", base)?;
            Credential::Token {
                token,
                token_ref,
                expires,
            }
        }
        _ => {
            let access = get_secret(o, "access", base, None)?.ok_or_else(|| {
                invalid(
                    &format!("{base}/access"),
                    "oauth needs `access` (the access token)",
                )
            })?;
            let refresh = get_secret(o, "refresh", base, None)?.ok_or_else(|| {
                invalid(
                    &format!("{base}/refresh"),
                    "oauth needs `refresh` (the refresh token)",
                )
            })?;
            let expires = get_millis(o, "expires", base)?.ok_or_else(|| {
                invalid(
                    &format!("{base}/expires"),
                    "oauth needs `expires` (milliseconds since the Unix epoch)",
                )
            })?;
            let token_url = get_string(o, "tokenUrl", base)?;
            if let Some(u) = &token_url {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    return Err(invalid(
                        &format!("{base}/tokenUrl"),
                        "`tokenUrl` must be an http(s) URL",
                    ));
                }
            }
            Credential::OAuth {
                access,
                refresh,
                expires,
                token_url,
                client_id: get_string(o, "clientId", base)?,
                account_id: get_string(o, "accountId", base)?,
            }
        }
    };
    Ok(Profile {
        id,
        provider,
        email,
        display_name,
        credential,
    })
}

fn exactly_one(a: bool, b: bool, base: &str, fa: &str, fb: &str) -> Result<(), RpcError> {
    match (a, b) {
        (true, false) | (false, true) => Ok(()),
        (true, true) => Err(invalid(
            &format!("{base}/{fb}"),
            format!("give exactly one of `{fa}` and `{fb}`, not both"),
        )),
        (false, false) => Err(invalid(
            &format!("{base}/{fa}"),
            format!("missing `{fa}` (or `{fb}`, a SecretRef)"),
        )
        .with_hint(EXAMPLE_HINT)),
    }
}

/// Example used in hints: how to store an API key with `profiles.put`.
pub const EXAMPLE_HINT: &str = "store a key with profiles.put {\"profile\": {\"id\": \"openai:default\", \"type\": \"api_key\", \"key\": \"<your key>\"}} (from a shell: echo '{...}' | modelauth call profiles.put -)";

/// A profile as stored, with its scope and bookkeeping.
#[derive(Debug, Clone)]
pub struct StoredProfile {
    /// The profile itself.
    pub profile: Profile,
    /// `None` = shared scope, `Some(agent)` = that agent's scope.
    pub scope: Option<String>,
    /// Increases by one on every put of this id in this scope (first put = 1).
    pub revision: i64,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

/// Usage as shown in a [`ProfileView`] (protocol §3): times in ms since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// Last `success` report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<i64>,
    /// End of the active cooldown that ends last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<i64>,
    /// Why (`rate_limit`, `timeout`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_reason: Option<String>,
    /// The model the cooldown is scoped to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_model: Option<String>,
    /// End of the active disable window (billing, auth_permanent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_until: Option<i64>,
    /// Why it is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Consecutive failures in the current failure window.
    pub error_count: u32,
}

/// What callers see of a profile (protocol §3 `ProfileView`): secrets only as
/// `{fingerprint, length}` unless revealed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    /// `<provider>:<name>`.
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// `api_key`, `token` or `oauth`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `shared` or the agent id.
    pub scope: String,
    /// E-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// OAuth account id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// api_key metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Expiry, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// The key's SecretRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<SecretRef>,
    /// The token's SecretRef.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<SecretRef>,
    /// OAuth token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// OAuth client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Fingerprint of the inline secret (for oauth: of the access token); null for a ref.
    pub secret: Option<SecretView>,
    /// Revision of this profile in its scope.
    pub revision: i64,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
    /// `ok`, `static`, `expiring`, `expired`, `refreshable`, `cooldown`, `disabled`,
    /// `needs_reauth` or `ref_unavailable`.
    pub status: String,
    /// Usage state (shared by every agent).
    pub usage: UsageView,
    /// With `reveal: true`: the plain API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// With `reveal: true`: the plain token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// With `reveal: true`: the plain access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Secret>,
    /// With `reveal: true`: the plain refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Secret>,
}

impl ProfileView {
    /// Builds the view of `sp` with `status` and `usage` computed by the caller.
    pub fn new(sp: &StoredProfile, status: &str, usage: UsageView, reveal: bool) -> Self {
        let p = &sp.profile;
        // A sealed secret that could not be opened (PROTOCOL §9 r3) is shown as none.
        let undecryptable = crate::core::sealed::credential_unopened(&p.credential);
        let reveal = reveal && !undecryptable;
        let mut v = ProfileView {
            id: p.id.clone(),
            provider: p.provider.clone(),
            kind: p.credential.type_name().to_string(),
            scope: sp.scope.clone().unwrap_or_else(|| "shared".to_string()),
            email: p.email.clone(),
            display_name: p.display_name.clone(),
            account_id: None,
            metadata: None,
            expires: p.credential.expires(),
            key_ref: None,
            token_ref: None,
            token_url: None,
            client_id: None,
            secret: p
                .credential
                .inline_secret()
                .filter(|_| !undecryptable)
                .map(Secret::view),
            revision: sp.revision,
            created_at: sp.created_at,
            updated_at: sp.updated_at,
            status: status.to_string(),
            usage,
            key: None,
            token: None,
            access: None,
            refresh: None,
        };
        match &p.credential {
            Credential::ApiKey {
                key,
                key_ref,
                metadata,
            } => {
                v.key_ref = key_ref.clone();
                v.metadata = metadata.clone();
                if reveal {
                    v.key = key.clone();
                }
            }
            Credential::Token {
                token, token_ref, ..
            } => {
                v.token_ref = token_ref.clone();
                if reveal {
                    v.token = token.clone();
                }
            }
            Credential::OAuth {
                access,
                refresh,
                token_url,
                client_id,
                account_id,
                ..
            } => {
                v.account_id = account_id.clone();
                v.token_url = token_url.clone();
                v.client_id = client_id.clone();
                if reveal {
                    v.access = Some(access.clone());
                    v.refresh = Some(refresh.clone());
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<Profile, RpcError> {
        validate_profile(&v, "/profile", &Aliases::new())
    }

    #[test]
    fn an_api_key_profile_is_accepted_and_normalised() {
        let p = check(json!({"id": "OpenAI:work", "type": "api_key", "key": " sk-abc\n"})).unwrap();
        assert_eq!(p.id, "openai:work");
        assert_eq!(p.provider, "openai");
        assert_eq!(p.credential.inline_secret().unwrap().expose(), "sk-abc");
    }

    #[test]
    fn unknown_type_lists_valid_types_at_the_type_pointer() {
        let e = check(json!({"id": "openai:x", "type": "bearer", "token": "t"})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidProfile);
        let d = e.data();
        assert_eq!(d["pointer"], "/profile/type");
        assert_eq!(d["validTypes"], json!(["api_key", "oauth", "token"]));
        assert_eq!(d["hint"], "did you mean `token`?");
    }

    #[test]
    fn near_misses_get_hints_without_echoing_the_secret() {
        let e = check(json!({"id": "openai:x", "type": "api_key", "apiKey": "sk-hidden-1"}))
            .unwrap_err();
        let j = e.to_json().to_string();
        assert!(j.contains("did you mean `key`?"), "{j}");
        assert!(!j.contains("sk-hidden-1"));
        assert_eq!(e.data()["pointer"], "/profile/apiKey");

        let e = check(json!({"id": "openai:x", "mode": "api_key", "key": "k"})).unwrap_err();
        assert_eq!(e.data()["hint"], "did you mean `type`?");
        let e = check(json!({"id": "openai:x", "type": "apiKey", "key": "k"})).unwrap_err();
        assert_eq!(e.data()["hint"], "did you mean `api_key`?");
    }

    #[test]
    fn exactly_one_secret_source_is_required() {
        let e = check(json!({"id": "openai:x", "type": "api_key"})).unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/key");
        let e = check(json!({"id": "openai:x", "type": "api_key", "key": "k",
            "keyRef": {"source": "env", "provider": "default", "id": "K"}}))
        .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/keyRef");
    }

    #[test]
    fn secret_refs_have_exactly_three_keys() {
        let ok = check(json!({"id": "openai:x", "type": "api_key",
            "keyRef": {"source": "env", "provider": "default", "id": "OPENAI_API_KEY"}}));
        assert!(ok.is_ok());
        let e = check(json!({"id": "openai:x", "type": "api_key",
            "keyRef": {"source": "env", "provider": "default", "id": "K", "x": 1}}))
        .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/keyRef/x");
        let e = check(json!({"id": "openai:x", "type": "api_key",
            "keyRef": {"source": "vault", "provider": "default", "id": "K"}}))
        .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/keyRef/source");
    }

    #[test]
    fn oauth_needs_inline_tokens_and_integer_expires() {
        let ok = check(
            json!({"id": "openai-codex:me", "type": "oauth", "access": "a", "refresh": "r", "expires": 1}),
        );
        assert!(ok.is_ok());
        let e = check(json!({"id": "x:me", "type": "oauth", "access": "a", "refresh": "r"}))
            .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/expires");
        let e = check(
            json!({"id": "x:me", "type": "oauth", "access": "a", "refresh": "r", "expires": 1.5}),
        )
        .unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/expires");
        let e = check(json!({"id": "x:me", "type": "oauth", "access": {"source": "env", "provider": "default", "id": "A"}, "refresh": "r", "expires": 5})).unwrap_err();
        assert_eq!(e.data()["pointer"], "/profile/access");
    }

    #[test]
    fn provider_must_match_the_id() {
        let e = check(
            json!({"id": "openai:x", "provider": "anthropic", "type": "api_key", "key": "k"}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ProviderMismatch);
        assert!(check(
            json!({"id": "openai:x", "provider": " OPENAI ", "type": "api_key", "key": "k"})
        )
        .is_ok());
    }

    #[test]
    fn fields_of_another_type_are_named() {
        let e = check(json!({"id": "openai:x", "type": "api_key", "key": "k", "expires": 5}))
            .unwrap_err();
        assert!(e.hint.unwrap().contains("belongs to type"));
    }

    #[test]
    fn stored_form_round_trips() {
        let p = check(
            json!({"id": "openai:x", "type": "token", "token": "t", "expires": 7, "email": "a@b"}),
        )
        .unwrap();
        let s = serde_json::to_string(&p).unwrap();
        let back: Profile = serde_json::from_str(&s).unwrap();
        assert_eq!(back, p);
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap()["type"], "token");
    }
}
