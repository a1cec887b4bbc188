//! Normalisation of one OpenClaw profile entry into the canonical object
//! `validate_profile` takes (legacy aliases, refs, inferred types, dropped fields).

use serde_json::{Map, Value};

use super::plan::entry_error;
use super::source::CREDENTIAL_FIELDS;
use super::types::EntryError;
use crate::core::ids::{self, Aliases};
use crate::core::profile::{allowed_fields, VALID_TYPES};

fn is_secret_view(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 2 && o.contains_key("fingerprint") && o.contains_key("length"))
}

/// A canonical profile object, its normalisation notes, the dropped field names and the
/// literal fields dropped because a ref was given too.
pub(super) type Normalised = (Map<String, Value>, Vec<String>, Vec<String>, Vec<String>);

/// Rewrites one OpenClaw entry into the canonical profile object `validate_profile` takes.
/// Returns the object, the normalisation notes and the names of dropped unknown fields.
pub(super) fn normalize_entry(
    key: &str,
    v: &Value,
    ptr: &str,
    flat_provider: Option<&str>,
    strict: bool,
) -> Result<Normalised, EntryError> {
    let Value::Object(src) = v else {
        return Err(entry_error(
            ptr,
            "non_object",
            "a profile entry must be a JSON object",
        ));
    };
    let mut o = src.clone();
    let mut notes = vec![];
    let mut ref_wins = vec![];
    refuse_secret_views(&o, ptr)?;
    if !strict {
        normalize_type_aliases(&mut o, &mut notes);
        normalize_key_aliases(&mut o, &mut notes);
        infer_flat_type(&mut o, &mut notes, flat_provider);
        normalize_refs(&mut o, &mut notes, &mut ref_wins);
    }
    let ty = checked_type(&o, ptr)?;
    fill_provider(&mut o, ptr, flat_provider)?;
    if let Err(e) = ids::normalize_profile_id(key, &Aliases::new()) {
        return Err(entry_error(ptr, "invalid_profile", e.to_string()));
    }
    o.insert("id".into(), Value::from(key));
    let dropped = if strict {
        vec![]
    } else {
        drop_unknown_fields(&mut o, &ty)
    };
    Ok((o, notes, dropped, ref_wins))
}

/// Refuses an entry whose secret field holds an export's `{fingerprint, length}` view
/// (`redacted_secret`): the secret itself is not in the source.
fn refuse_secret_views(o: &Map<String, Value>, ptr: &str) -> Result<(), EntryError> {
    for f in ["key", "token", "access", "refresh"] {
        if o.get(f).is_some_and(is_secret_view) {
            return Err(entry_error(
                ptr,
                "redacted_secret",
                format!(
                    "`{f}` holds a fingerprint, not the secret: export with reveal: true to import"
                ),
            ));
        }
    }
    Ok(())
}

/// OpenClaw's legacy `mode` → `type` (a canonical `type` wins) and `type: "apiKey"` →
/// `api_key`, one note each.
fn normalize_type_aliases(o: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let mode = o.remove("mode");
    match (o.get("type").cloned(), mode) {
        (Some(t), Some(m)) if t != m => notes.push("type wins over conflicting mode".into()),
        (Some(_), Some(_)) => notes.push("mode dropped (same as type)".into()),
        (None, Some(m)) => {
            o.insert("type".into(), m);
            notes.push("mode -> type".into());
        }
        _ => {}
    }
    if o.get("type").and_then(Value::as_str) == Some("apiKey") {
        o.insert("type".into(), Value::from("api_key"));
        notes.push("type apiKey -> api_key".into());
    }
}

/// OpenClaw's legacy `apiKey` / `api_key` → `key`; a canonical `key` wins and the
/// discarded value is never stored (nor named in the note).
fn normalize_key_aliases(o: &mut Map<String, Value>, notes: &mut Vec<String>) {
    for alias in ["apiKey", "api_key"] {
        if let Some(val) = o.remove(alias) {
            if o.contains_key("key") {
                notes.push(format!(
                    "key wins over conflicting {alias} ({alias} value discarded)"
                ));
            } else {
                o.insert("key".into(), val);
                notes.push(format!("{alias} -> key"));
            }
        }
    }
}

/// The type of an untyped entry of a flat map (`flat_provider` given): api_key from
/// `key` / `keyRef`, oauth from `access` / `refresh` (Era A `credentials/oauth.json`).
fn infer_flat_type(
    o: &mut Map<String, Value>,
    notes: &mut Vec<String>,
    flat_provider: Option<&str>,
) {
    if flat_provider.is_some() && !o.contains_key("type") && o.contains_key("key")
        || flat_provider.is_some() && !o.contains_key("type") && o.contains_key("keyRef")
    {
        o.insert("type".into(), Value::from("api_key"));
        notes.push("type inferred as api_key".into());
    }
    // Era A `credentials/oauth.json`: `{provider: {access, refresh, expires, …}}`, no type.
    if flat_provider.is_some()
        && !o.contains_key("type")
        && (o.contains_key("access") || o.contains_key("refresh"))
    {
        o.insert("type".into(), Value::from("oauth"));
        notes.push("type inferred as oauth (legacy oauth.json)".into());
    }
}

/// A SecretRef object in `key` / `token` → `keyRef` / `tokenRef`; a literal beside a ref
/// is dropped (named in `ref_wins`, as OpenClaw keeps the ref); a legacy ref
/// `{source, id}` gets provider `default`.
fn normalize_refs(o: &mut Map<String, Value>, notes: &mut Vec<String>, ref_wins: &mut Vec<String>) {
    for (f, rf) in [("key", "keyRef"), ("token", "tokenRef")] {
        // Both a literal and a ref: OpenClaw keeps the ref and drops the literal.
        if o.contains_key(f) && o.get(rf).is_some_and(Value::is_object) {
            o.remove(f);
            ref_wins.push(f.to_string());
            continue;
        }
        if o.get(f).is_some_and(Value::is_object) && !o.contains_key(rf) {
            let r = o.remove(f).unwrap_or(Value::Null);
            o.insert(rf.into(), r);
            notes.push(format!("SecretRef in {f} -> {rf}"));
        }
    }
    for rf in ["keyRef", "tokenRef"] {
        if let Some(Value::Object(r)) = o.get_mut(rf) {
            if r.contains_key("source") && r.contains_key("id") && !r.contains_key("provider") {
                r.insert("provider".into(), Value::from("default"));
                notes.push(format!(
                    "legacy ref in {rf} completed with provider default"
                ));
            }
        }
    }
}

/// The entry's `type`, one of [`VALID_TYPES`]; else OpenClaw's `invalid_type` (a type
/// longer than 32 characters is not echoed).
fn checked_type(o: &Map<String, Value>, ptr: &str) -> Result<String, EntryError> {
    match o.get("type") {
        Some(Value::String(t)) if VALID_TYPES.contains(&t.as_str()) => Ok(t.clone()),
        Some(Value::String(t)) => {
            let shown = if t.chars().count() <= 32 {
                format!("`{t}`")
            } else {
                "a long string".into()
            };
            Err(entry_error(
                ptr,
                "invalid_type",
                format!("profile type {shown} is not one of api_key, oauth, token"),
            ))
        }
        Some(_) => Err(entry_error(
            ptr,
            "invalid_type",
            "profile type must be a string: api_key, oauth or token",
        )),
        None => Err(entry_error(
            ptr,
            "invalid_type",
            "profile has no type (api_key, oauth or token)",
        )),
    }
}

/// Keeps a non-blank `provider`, else sets the flat map's key; else OpenClaw's
/// `missing_provider`.
fn fill_provider(
    o: &mut Map<String, Value>,
    ptr: &str,
    flat_provider: Option<&str>,
) -> Result<(), EntryError> {
    match (o.get("provider"), flat_provider) {
        (Some(Value::String(p)), _) if !p.trim().is_empty() => {}
        (_, Some(p)) => {
            o.insert("provider".into(), Value::from(p));
        }
        _ => {
            return Err(entry_error(
                ptr,
                "missing_provider",
                "profile has no `provider`",
            ))
        }
    }
    Ok(())
}

/// Removes the fields a profile of type `ty` does not have and returns their names.
/// Secret fields of another type stay (validate_profile names them as an error).
fn drop_unknown_fields(o: &mut Map<String, Value>, ty: &str) -> Vec<String> {
    let allowed = allowed_fields(ty);
    let unknown: Vec<String> = o
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut dropped = vec![];
    for k in unknown {
        // Secret fields of another type are an error (validate_profile names them), not a drop.
        if CREDENTIAL_FIELDS.contains(&k.as_str()) {
            continue;
        }
        o.remove(&k);
        dropped.push(k);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openclaw::import::{load_json, plan, Format, ImportPlan};
    use serde_json::json;

    fn plan_of(doc: Value) -> ImportPlan {
        let l = load_json(doc, Format::Auto, None).unwrap();
        plan(&l, &Aliases::new())
    }

    #[test]
    fn legacy_aliases_are_normalised_with_one_warning_each() {
        let p = plan_of(json!({"version": 1, "profiles": {
            "a:m": {"provider": "a", "mode": "api_key", "apiKey": "k1"},
            "a:t": {"provider": "a", "type": "apiKey", "key": "k2"},
            "a:r": {"provider": "a", "type": "api_key", "key": {"source": "env", "id": "X"}},
            "a:w": {"provider": "a", "type": "api_key", "key": "k3", "apiKey": "k4-ignored"},
            "a:ok": {"provider": "a", "type": "api_key", "key": "k5"}
        }}));
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.warnings.len(), 4);
        let s = &p.scopes[0];
        assert_eq!(s.profiles.len(), 5);
        let r = &s.profiles["a:r"].profile.credential;
        assert_eq!(r.secret_ref().unwrap().provider, "default");
        let w = s.profiles["a:w"]
            .profile
            .credential
            .inline_secret()
            .unwrap();
        assert_eq!(w.expose(), "k3");
        assert!(!format!("{:?}", p.warnings).contains("k4-ignored"));
    }

    #[test]
    fn a_ref_beats_a_literal_and_era_a_entries_are_oauth() {
        let p = plan_of(json!({"version": 1, "profiles": {
            "a:both": {"type": "api_key", "provider": "a", "key": "lit", "keyRef": {"source": "env", "provider": "default", "id": "A_KEY"}},
            "b:both": {"type": "token", "provider": "b", "token": "lit", "tokenRef": {"source": "env", "provider": "default", "id": "B_TOK"}}
        }}));
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let ptrs: Vec<&str> = p
            .warnings
            .iter()
            .filter(|w| w.kind == "literal_dropped")
            .map(|w| w.pointer.as_str())
            .collect();
        assert_eq!(ptrs, ["/profiles/a:both/key", "/profiles/b:both/token"]);
        assert!(!format!("{:?}", p.warnings).contains("lit\""));
        let c = &p.scopes[0].profiles["a:both"].profile.credential;
        assert!(c.inline_secret().is_none() && c.secret_ref().is_some());
        let e = plan_of(
            json!({"anthropic": {"access": "a", "refresh": "r", "expires": 1_800_000_000_000i64}}),
        );
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(
            e.scopes[0].profiles["anthropic:default"]
                .profile
                .credential
                .type_name(),
            "oauth"
        );
    }
}
