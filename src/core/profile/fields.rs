//! Field-level reading and errors shared by profile validation: the fields of each type,
//! typed getters, near-miss hints and JSON pointers.

use serde_json::{Map, Value};

use super::types::VALID_TYPES;
use crate::core::error::{ErrorKind, RpcError};
use crate::core::secret_value::{normalize_secret_input, Secret, SecretInputError};

pub(super) fn invalid(pointer: &str, message: impl Into<String>) -> RpcError {
    RpcError::new(ErrorKind::InvalidProfile, message)
        .with("pointer", pointer)
        .with("validTypes", VALID_TYPES)
}

pub(super) const COMMON_FIELDS: &[&str] = &["id", "type", "provider", "email", "displayName"];
pub(super) const API_KEY_FIELDS: &[&str] = &["key", "keyRef", "metadata"];
pub(super) const TOKEN_FIELDS: &[&str] = &["token", "tokenRef", "expires"];
pub(super) const OAUTH_FIELDS: &[&str] = &[
    "access",
    "refresh",
    "expires",
    "tokenUrl",
    "clientId",
    "accountId",
];

/// The fields a profile of type `ty` may carry (common ones included), as
/// [`super::validate_profile`] accepts them; empty for an unknown type.
pub(crate) fn allowed_fields(ty: &str) -> Vec<&'static str> {
    let own: &[&str] = match ty {
        "api_key" => API_KEY_FIELDS,
        "token" => TOKEN_FIELDS,
        "oauth" => OAUTH_FIELDS,
        _ => return vec![],
    };
    COMMON_FIELDS.iter().chain(own).copied().collect()
}

/// The field a near-miss name most likely meant (`apiKey` → `key`, `mode` → `type`).
pub(super) fn near_miss_field(name: &str, ty: &str) -> Option<&'static str> {
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

pub(super) fn type_error(pointer: &str, got: Option<&Value>) -> RpcError {
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

pub(super) fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn get_string(
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
pub(super) fn get_millis(
    obj: &Map<String, Value>,
    field: &str,
    base: &str,
) -> Result<Option<i64>, RpcError> {
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

pub(super) fn get_secret(
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

/// `s` cut to 40 characters (with `…`), for naming a caller's key in a message.
pub(super) fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901: `~` → `~0`, `/` → `~1`).
pub(crate) fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

pub(super) fn exactly_one(
    a: bool,
    b: bool,
    base: &str,
    fa: &str,
    fb: &str,
) -> Result<(), RpcError> {
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
pub(crate) const EXAMPLE_HINT: &str = "store a key with profiles.put {\"profile\": {\"id\": \"openai:default\", \"type\": \"api_key\", \"key\": \"<your key>\"}} (from a shell: echo '{...}' | modelauth call profiles.put -)";
