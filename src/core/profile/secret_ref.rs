//! SecretRef parsing: `{source, provider, id}` objects (protocol §2.2, §5.1).

use serde_json::Value;

use super::fields::{escape_pointer, invalid, short};
use super::types::{SecretRef, SecretSource};
use crate::core::error::RpcError;
use crate::core::ids;

/// Validates a SecretRef object at `pointer` (exactly `source`, `provider`, `id`).
pub(crate) fn validate_secret_ref(v: &Value, pointer: &str) -> Result<SecretRef, RpcError> {
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
pub(crate) fn is_store_ref_id(id: &str) -> bool {
    id.len() <= 128
        && id.starts_with(|c: char| c.is_ascii_uppercase())
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_ref_provider(s: &str) -> bool {
    ids::validate_agent(s).is_ok()
}
