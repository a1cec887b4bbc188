//! `modelauth openclaw-provider`: OpenClaw's exec SecretRef protocol v1 (protocol §12 r3),
//! so OpenClaw can take its keys from modelauth with
//! `secrets.providers.modelauth = {source: "exec", command: "/usr/local/bin/modelauth",
//! args: ["openclaw-provider"]}` and `apiKey: {source: "exec", provider: "modelauth", id: "openai"}`.
//!
//! stdin: `{"protocolVersion": 1, "provider": "<alias>", "ids": ["openai", ...]}`;
//! stdout: `{"protocolVersion": 1, "values": {id: secret}, "errors": {id: {code, message}}}`.
//! An id is `PROVIDER[#agent:A][#model:M]` inside OpenClaw's exec id rule
//! (`^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,255}$`). Each id is resolved by `auth.resolve` (the same
//! walk, cooldowns and OAuth refresh as every other caller). An id that resolves nothing gets
//! `errors[id].code = "NOT_FOUND"` (a code OpenClaw passes on as `SECRET_REF_NOT_FOUND`).

use std::io::{self, Read, Write};

use serde_json::{json, Map, Value};

use super::exec::resolve_secret;
use crate::core::error::{ErrorKind, RpcError};
use crate::protocol::dispatch::Dispatcher;

/// The largest request read from stdin (OpenClaw's own batch limit is far below).
const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// What one id asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ProviderId {
    /// The provider (normalised later by `auth.resolve`).
    pub provider: String,
    /// `#agent:A`.
    pub agent: Option<String>,
    /// `#model:M`.
    pub model: Option<String>,
}

/// Whether `id` passes OpenClaw's exec SecretRef id rule `^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,255}$`.
pub(super) fn is_exec_id(id: &str) -> bool {
    id.len() <= 256
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:/#-".contains(c))
}

/// Parses `PROVIDER[#agent:A][#model:M]` (parts after the provider in any order, each at
/// most once). Errors: a message naming what is wrong.
pub(super) fn parse_id(id: &str) -> Result<ProviderId, String> {
    if !is_exec_id(id) {
        return Err(
            "the id does not match OpenClaw's exec id rule ^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,255}$"
                .into(),
        );
    }
    let mut parts = id.split('#');
    let provider = parts.next().unwrap_or_default().to_string();
    let mut out = ProviderId {
        provider,
        agent: None,
        model: None,
    };
    for part in parts {
        let (slot, value) = match part.split_once(':') {
            Some(("agent", v)) => (&mut out.agent, v),
            Some(("model", v)) => (&mut out.model, v),
            _ => {
                return Err(format!(
                    "`#{part}` is not `#agent:A` or `#model:M` (the id is PROVIDER[#agent:A][#model:M])"
                ))
            }
        };
        if value.is_empty() || slot.is_some() {
            return Err(format!("`#{part}` is empty or given twice"));
        }
        *slot = Some(value.to_string());
    }
    if out.provider.is_empty() {
        return Err("the id names no provider".into());
    }
    Ok(out)
}

/// The error code OpenClaw gets for a failed resolve: `NOT_FOUND` when the store has no
/// usable credential for the id (nothing stored, all cooling down, expired, a ref that
/// cannot be read, an unknown provider or agent), else `PROVIDER_ERROR` (the store cannot
/// be read, an internal error).
pub(super) fn error_code(kind: ErrorKind) -> &'static str {
    use ErrorKind::*;
    match kind {
        StoreBusy | StoreCorrupt | StorePermissions | StoreReadonly | StoreNewerSchema
        | StoreUnavailable | Internal => "PROVIDER_ERROR",
        InvalidParams => "INVALID_ID",
        _ => "NOT_FOUND",
    }
}

/// Answers one request document. Pure apart from `resolve`.
pub(super) fn answer(
    request: &Value,
    resolve: &mut dyn FnMut(&ProviderId) -> Result<String, RpcError>,
) -> Result<Value, String> {
    if request.get("protocolVersion").and_then(Value::as_i64) != Some(1) {
        return Err("the request's protocolVersion must be 1".into());
    }
    let Some(ids) = request.get("ids").and_then(Value::as_array) else {
        return Err("the request has no `ids` array".into());
    };
    let mut values = Map::new();
    let mut errors = Map::new();
    for id in ids {
        let Some(id) = id.as_str() else {
            return Err("every entry of `ids` must be a string".into());
        };
        let got = parse_id(id).map_err(|m| ("INVALID_ID", m)).and_then(|pid| {
            resolve(&pid).map_err(|e| {
                (
                    error_code(e.kind),
                    format!("{} ({})", e.message, e.kind.as_str()),
                )
            })
        });
        match got {
            Ok(secret) => {
                values.insert(id.to_string(), Value::String(secret));
            }
            Err((code, message)) => {
                errors.insert(id.to_string(), json!({"code": code, "message": message}));
            }
        }
    }
    Ok(json!({"protocolVersion": 1, "values": values, "errors": errors}))
}

/// Runs the verb: reads the request from stdin, answers on stdout. Exit 0 with an answer
/// (even when some ids have errors), 1 when the request itself is unusable (the reason on
/// stderr, nothing on stdout).
pub(super) fn run(d: &Dispatcher) -> i32 {
    let mut buf = Vec::new();
    if let Err(e) = io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut buf)
    {
        eprintln!("modelauth openclaw-provider: cannot read the request: {e}");
        return 1;
    }
    if buf.len() as u64 > MAX_REQUEST_BYTES {
        eprintln!(
            "modelauth openclaw-provider: the request is larger than {MAX_REQUEST_BYTES} bytes"
        );
        return 1;
    }
    let request: Value = match serde_json::from_slice(&buf) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("modelauth openclaw-provider: the request is not JSON ({{\"protocolVersion\":1,\"provider\":..,\"ids\":[..]}})");
            return 1;
        }
    };
    let mut resolve = |p: &ProviderId| {
        resolve_secret(d, &p.provider, p.agent.as_deref(), p.model.as_deref(), None)
            .map(|r| r.secret)
    };
    match answer(&request, &mut resolve) {
        Ok(v) => {
            let mut out = io::stdout().lock();
            match writeln!(out, "{v}").and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(_) => 1,
            }
        }
        Err(m) => {
            eprintln!("modelauth openclaw-provider: {m}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_openclaws_rule_and_name_provider_agent_model() {
        assert_eq!(
            parse_id("openai").unwrap(),
            ProviderId {
                provider: "openai".into(),
                agent: None,
                model: None
            }
        );
        assert_eq!(
            parse_id("anthropic#model:claude-sonnet-5#agent:cron-nightly").unwrap(),
            ProviderId {
                provider: "anthropic".into(),
                agent: Some("cron-nightly".into()),
                model: Some("claude-sonnet-5".into())
            }
        );
        for bad in [
            "",
            "#agent:a",
            "openai#agent:",
            "openai#agent:a#agent:b",
            "openai#team:x",
            "openai=x",
            "openai&agent=a",
            "-openai",
            &"a".repeat(257),
        ] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
        assert!(is_exec_id(&"a".repeat(256)));
    }

    #[test]
    fn answers_values_and_not_found_per_id() {
        let req = json!({"protocolVersion": 1, "provider": "modelauth", "ids": ["openai", "mistral", "bad=id"]});
        let mut resolve = |p: &ProviderId| {
            if p.provider == "openai" {
                Ok("sk-fake".to_string())
            } else {
                Err(RpcError::new(ErrorKind::MissingCredential, "no profile"))
            }
        };
        let v = answer(&req, &mut resolve).unwrap();
        assert_eq!(v["protocolVersion"], 1);
        assert_eq!(v["values"], json!({"openai": "sk-fake"}));
        assert_eq!(v["errors"]["mistral"]["code"], "NOT_FOUND");
        assert_eq!(v["errors"]["bad=id"]["code"], "INVALID_ID");
        assert!(answer(&json!({"protocolVersion": 2, "ids": []}), &mut resolve).is_err());
        assert!(answer(&json!({"protocolVersion": 1}), &mut resolve).is_err());
    }
}
