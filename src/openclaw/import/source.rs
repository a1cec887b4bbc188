//! Format detection and loading of one JSON document into a [`Loaded`] source.

use serde_json::{Map, Value};

use super::types::{Format, Loaded, Piece, PieceKind};
use crate::core::error::{ErrorKind, RpcError};
use crate::core::ids;

fn shape_unrecognized(what: &str) -> RpcError {
    RpcError::new(
        ErrorKind::ShapeUnrecognized,
        format!("{what} is not a credential store of a known shape; nothing was imported"),
    )
    .with_hint("formats: modelauth, openclaw (auth-profiles.json), openclaw-flat (auth.json), openclaw-sqlite, openclaw-state (a directory such as ~/.openclaw)")
}

/// The member names that make a JSON object look like a credential entry.
pub(super) const CREDENTIAL_FIELDS: &[&str] = &[
    "type", "mode", "key", "apiKey", "api_key", "keyRef", "token", "tokenRef", "access", "refresh",
];

fn looks_like_credential(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| CREDENTIAL_FIELDS.iter().any(|f| o.contains_key(*f)))
}

/// Detects the format of a JSON document: `{document: {profiles}}` → modelauth,
/// `{profiles: {...}}` → openclaw, a map most of whose values are credential-like objects →
/// openclaw-flat; else `None`.
pub(crate) fn detect_json(doc: &Value) -> Option<Format> {
    let o = doc.as_object()?;
    if let Some(Value::Object(d)) = o.get("document") {
        if d.get("profiles").is_some_and(Value::is_object) {
            return Some(Format::Modelauth);
        }
    }
    if o.get("profiles").is_some_and(Value::is_object) {
        return Some(Format::Openclaw);
    }
    let cred = o.values().filter(|v| looks_like_credential(v)).count();
    if cred > 0 && cred * 2 >= o.len() {
        return Some(Format::OpenclawFlat);
    }
    None
}

/// Turns one JSON document into a [`Loaded`] of `format` (`auto` detects it) for the scope
/// `agent`. Errors: `shape_unrecognized` when the shape fits no format (or not the one
/// given); `import_invalid` for a store version other than 1.
pub(crate) fn load_json(
    doc: Value,
    format: Format,
    agent: Option<&str>,
) -> Result<Loaded, RpcError> {
    let format = match format {
        Format::Auto => detect_json(&doc).ok_or_else(|| shape_unrecognized("the document"))?,
        Format::OpenclawSqlite | Format::OpenclawState | Format::ModelauthStore => {
            return Err(RpcError::invalid_params(format!(
                "format {} needs a `path`, not a `document`",
                format.as_str()
            ))
            .with("pointer", "/format"))
        }
        f => f,
    };
    let mut agent = agent.map(str::to_string);
    let (kind, doc, strict) = match format {
        Format::Modelauth => {
            let inner = match doc {
                Value::Object(mut o) if o.contains_key("document") => {
                    // A saved `store.export` result names its scope; the `agent` param wins.
                    if agent.is_none() {
                        agent = o
                            .get("agent")
                            .and_then(Value::as_str)
                            .map(|a| {
                                ids::validate_agent(a).map_err(|e| {
                                    RpcError::new(ErrorKind::ImportInvalid, e.to_string())
                                        .with("pointer", "/agent")
                                })
                            })
                            .transpose()?;
                    }
                    o.remove("document").unwrap_or(Value::Null)
                }
                other => other,
            };
            if !inner.get("profiles").is_some_and(Value::is_object) {
                return Err(shape_unrecognized("the document (format modelauth)"));
            }
            (PieceKind::Store, inner, true)
        }
        Format::Openclaw => {
            if !doc.get("profiles").is_some_and(Value::is_object) {
                return Err(shape_unrecognized("the document (format openclaw)"));
            }
            (PieceKind::Store, doc, false)
        }
        _ => {
            if !doc.is_object() || doc.as_object().is_some_and(Map::is_empty) {
                return Err(shape_unrecognized("the document (format openclaw-flat)"));
            }
            (PieceKind::Flat, doc, false)
        }
    };
    if kind == PieceKind::Store {
        check_version(&doc, "")?;
    }
    Ok(Loaded {
        format,
        pieces: vec![Piece {
            agent,
            kind,
            doc,
            source: None,
            strict,
        }],
        warnings: vec![],
        errors: vec![],
    })
}

/// Refuses a store document whose `version` is present and not 1 (`import_invalid`).
pub(crate) fn check_version(doc: &Value, source: &str) -> Result<(), RpcError> {
    match doc.get("version") {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_i64() == Some(1) => Ok(()),
        Some(_) => Err(RpcError::new(
            ErrorKind::ImportInvalid,
            format!(
                "{source}the auth-profile store has a `version` other than 1; nothing was imported"
            ),
        )
        .with("pointer", "/version")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detects_the_json_formats() {
        assert_eq!(
            detect_json(&json!({"version": 1, "profiles": {}})),
            Some(Format::Openclaw)
        );
        assert_eq!(
            detect_json(&json!({"document": {"version": 1, "profiles": {}}})),
            Some(Format::Modelauth)
        );
        assert_eq!(
            detect_json(&json!({"openai": {"apiKey": "k"}})),
            Some(Format::OpenclawFlat)
        );
        assert_eq!(
            detect_json(&json!({"name": "x", "scripts": {"a": "b"}})),
            None
        );
        assert_eq!(detect_json(&json!({})), None);
        assert_eq!(detect_json(&json!([1])), None);
        let e = load_json(json!({"name": "x"}), Format::Auto, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShapeUnrecognized);
        let wrapped = json!({"agent": "main", "document": {"version": 1, "profiles": {}}});
        let l = load_json(wrapped.clone(), Format::Auto, None).unwrap();
        assert_eq!(l.pieces[0].agent.as_deref(), Some("main"));
        let l = load_json(wrapped, Format::Auto, Some("cron")).unwrap();
        assert_eq!(l.pieces[0].agent.as_deref(), Some("cron"));
        let e = load_json(json!({"version": 2, "profiles": {}}), Format::Auto, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ImportInvalid);
        let e = load_json(json!({"name": "x"}), Format::Openclaw, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ShapeUnrecognized);
    }
}
